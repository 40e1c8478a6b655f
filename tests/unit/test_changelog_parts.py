"""A store value larger than a Kafka record may be is written in parts and joined on restore
(``streams.state.changelog``): issue 19 found a 1 MB device-health value that no transaction
could commit, so the decide stage stopped deciding."""

from __future__ import annotations

import pytest

from streams.state.changelog import (
    PARTS_TAG,
    changelog_entries,
    join_parts,
    part_key,
)
from streams.state.store import changelog_key

K = changelog_key("devices", "c1|gate-1")


def _replay(
    writes: list[bytes | None], part_bytes: int
) -> tuple[list[list[tuple[bytes, bytes | None]]], dict[bytes, bytes | None], dict[bytes, int]]:
    """Each value written in turn (one transaction each) into a compacted log (newest per key),
    as the stage writes them; returns the records per write and the log."""
    parts: dict[bytes, int] = {}
    log: dict[bytes, bytes | None] = {}
    batches = []
    for raw in writes:
        records = changelog_entries([("devices", "c1|gate-1", raw)], parts, part_bytes)
        batches.append(records)
        for key, value in records:
            log[key] = value
    return batches, log, parts


@pytest.mark.parametrize(
    ("writes", "part_bytes", "largest"),
    [
        pytest.param([b"x" * 10], 16, 10, id="small: one record, unchanged"),
        pytest.param([b"x" * 16], 16, 16, id="exactly the limit: one record"),
        pytest.param([b"ab" * 20], 16, 16, id="40 bytes: three parts + manifest"),
        pytest.param([b"a" * 100, b"b" * 20], 16, 16, id="shrinks: stale parts tombstoned"),
        pytest.param([b"a" * 20, b"b" * 5], 16, 16, id="back to one record"),
        pytest.param([b"a" * 100, None], 16, 16, id="deleted"),
        pytest.param([b"a" * 20, b"c" * 70, b"d" * 33], 16, 16, id="grows, shrinks"),
    ],
)
def test_parts_round_trip(writes: list[bytes | None], part_bytes: int, largest: int) -> None:
    batches, log, parts = _replay(writes, part_bytes)
    # no record over the limit but a manifest (the tag and a count: small)
    values = [v for b in batches for _, v in b if v is not None]
    assert max(len(v) for v in values if not v.startswith(PARTS_TAG)) <= largest
    assert all(len(v) < 24 for v in values if v.startswith(PARTS_TAG))
    # restore from the whole log gives the last value, and the part count the writer has
    learned: dict[bytes, int] = {}
    restored = dict(join_parts(log, learned))
    assert restored == {K: writes[-1]}
    assert learned == parts
    # no live part beyond what the manifest announces (stale ones are tombstones)
    live = [k for k, v in log.items() if k != K and v is not None]
    assert len(live) == parts.get(K, 0)


def test_restore_from_the_middle_sees_only_the_newest_write() -> None:
    """An incremental restore reads from a position: the newest write's parts are always in the
    same transaction as its manifest, so they are all after that position."""
    batches, _, _ = _replay([b"a" * 40, b"b" * 50], 16)
    tail: dict[bytes, bytes | None] = {}
    for key, value in batches[-1]:
        tail[key] = value
    assert dict(join_parts(tail)) == {K: b"b" * 50}


def test_a_missing_part_is_an_error_not_a_wrong_value() -> None:
    log = {part_key(K, 0): b"x", K: PARTS_TAG + b"2"}
    with pytest.raises(ValueError, match="2 parts announced"):
        join_parts(log)
