"""Coverage-guided fuzzing of ``Codec.decode`` with validation (atheris).

Input layout: the first byte picks the record the bytes are decoded as (index into the
contract's record names), the rest is the Kafka message value. The only exception allowed out
of ``decode`` is ``InvalidEvent``; anything else is a crash atheris reports (and saves).

    python tests/fuzz/fuzz_codec.py tests/fuzz/corpus/codec -runs=100000 -seed=1
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["schemas"]):
    from schemas import Codec, InvalidEvent

CODEC = Codec()
NAMES = CODEC.record_names


def test_one_input(data: bytes) -> None:
    if not data:
        return
    name = NAMES[data[0] % len(NAMES)]
    with contextlib.suppress(InvalidEvent):
        CODEC.decode(name, data[1:], validate=True)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
