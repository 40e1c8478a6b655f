"""Write the seed corpus under tests/fuzz/corpus/ from the contract's examples (run once; the
result is committed, so fuzz runs start from valid inputs and their near misses)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from schemas import Codec, contract

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def _write(directory: Path, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def codec_corpus() -> None:
    codec = Codec()
    for index, name in enumerate(codec.record_names):
        for example in contract.examples(name):
            payload = codec.encode(name, example)
            _write(CORPUS / "codec", bytes([index]) + payload)
            _write(CORPUS / "codec", bytes([index]) + payload[:-3])  # truncated


LOADER_KINDS = ("residents", "passes", "vehicles", "rules")


def loader_corpus() -> None:
    examples = HERE.parents[1] / "docs" / "examples"
    for index, kind in enumerate(LOADER_KINDS):
        if kind == "rules":
            sources = [
                json.dumps(e, ensure_ascii=False).encode()
                for e in contract.examples("CommunityRules")
            ]
        else:
            sources = [(examples / f"{kind}-example.csv").read_bytes()]
        for source in sources:
            _write(CORPUS / "loaders", bytes([index]) + source)
            _write(CORPUS / "loaders", bytes([index]) + source.decode("utf-8").encode("gb18030"))


def main() -> None:
    codec_corpus()
    loader_corpus()


if __name__ == "__main__":
    main()
