"""Coverage-guided fuzzing of the reference loaders (atheris): the CSV registers (residents,
visitor passes, vehicles) and the rules JSON, each followed by the contract check
``fangxian load`` makes before producing anything.

Input layout: the first byte picks the kind, the rest is the file's bytes. Allowed out of the
loaders: ``LoadError`` (the file as a whole is unusable) and ``InvalidEvent`` (a record the
contract refuses); a row-level problem is a ``RowError`` in the result, not an exception.

    python tests/fuzz/fuzz_loaders.py tests/fuzz/corpus/loaders -runs=20000 -seed=1
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["fangxian", "schemas"]):
    from fangxian.core.settings import Settings
    from fangxian.ingest.loading import LoadError, read_kind
    from schemas import Codec, InvalidEvent
    from schemas.topics import RECORD_OF_KIND

KINDS = ("residents", "passes", "vehicles", "rules")
SETTINGS = Settings(pseudonym_key="fuzz-key-not-a-secret")
CODEC = Codec()
_FD, _PATH = tempfile.mkstemp(prefix="fangxian-fuzz-")
os.close(_FD)
FILE = Path(_PATH)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    FILE.write_bytes(data[1:])
    with contextlib.suppress(LoadError, InvalidEvent):
        result = read_kind(kind, FILE, SETTINGS)
        for record in result.records:
            CODEC.encode(RECORD_OF_KIND[kind], record)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
