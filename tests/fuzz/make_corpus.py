"""Write the seed corpus under tests/fuzz/corpus/ from the contract's examples (run once; the
result is committed, so fuzz runs start from valid inputs and their near misses)."""

from __future__ import annotations

import hashlib
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


def main() -> None:
    codec_corpus()


if __name__ == "__main__":
    main()
