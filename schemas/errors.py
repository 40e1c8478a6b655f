"""The one failure type of the contract: an event that cannot be decoded or is not valid.

``reason`` is a short machine code (it becomes ``DeadLetter.reason`` and a metric label);
``detail`` says in English what exactly was wrong, for the person reading the dead letter.
"""

from __future__ import annotations

from typing import Final

EMPTY: Final = "empty"
BAD_MARKER: Final = "bad_marker"
TRUNCATED: Final = "truncated"
UNKNOWN_FINGERPRINT: Final = "unknown_fingerprint"
SCHEMA_MISMATCH: Final = "schema_mismatch"
WRONG_RECORD: Final = "wrong_record"
INVALID_VALUE: Final = "invalid_value"

REASONS: Final[tuple[str, ...]] = (
    EMPTY,
    BAD_MARKER,
    TRUNCATED,
    UNKNOWN_FINGERPRINT,
    SCHEMA_MISMATCH,
    WRONG_RECORD,
    INVALID_VALUE,
)


class InvalidEvent(Exception):
    """An undecodable or invalid event: dead-letter it with ``reason`` and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[InvalidEvent], tuple[str, str]]:
        # Keep the two-argument constructor working across pickling (process pools, Faust).
        return (type(self), (self.reason, self.detail))
