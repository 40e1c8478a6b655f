"""restore_partitions replays each changelog partition up to its end offset, whatever the fetch
sizes, and says how far it is on a non-terminal stream (the worker's log)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.state import changelog
from streams.state.store import KeyedStore, changelog_key

TP = TopicPartition("app-decide-changelog", 0)


class FakeConsumer:
    """The part of aiokafka's consumer the restore uses, over an in-memory partition."""

    def __init__(self, records: list[tuple[bytes, bytes | None]], per_fetch: int) -> None:
        self._records = [
            SimpleNamespace(offset=i, key=k, value=v) for i, (k, v) in enumerate(records)
        ]
        self._pos = 0
        self._per_fetch = per_fetch

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: len(self._records)}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._pos = offset

    async def getmany(self, *tps: Any, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        batch = self._records[self._pos : self._pos + self._per_fetch]
        self._pos += len(batch)
        return {TP: batch} if batch else {}

    async def position(self, tp: TopicPartition) -> int:
        return self._pos


@pytest.mark.parametrize(
    ("start", "per_fetch", "expected"),
    [
        pytest.param(0, 1000, {"a": 3, "b": 2}, id="everything in one fetch"),
        pytest.param(0, 1, {"a": 3, "b": 2}, id="one record per fetch gives the same state"),
        pytest.param(2, 2, {"a": 3}, id="from a start offset: only the newer records"),
        pytest.param(4, 2, {"b": 2}, id="a tombstone after the start deletes"),
    ],
)
def test_restore_reaches_the_end_offset(
    start: int, per_fetch: int, expected: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        (changelog_key("quota", "a"), b"1"),
        (changelog_key("quota", "b"), b"2"),
        (changelog_key("quota", "a"), b"3"),
        (changelog_key("quota", "c"), b"9"),
        (changelog_key("quota", "c"), None),
    ]
    store: KeyedStore[int] = KeyedStore("quota")
    if start == 4:
        store.restore("b", b"2")
        store.restore("c", b"9")

    def apply(name: str, key: str, raw: bytes | None) -> None:
        assert name == "quota"
        store.restore(key, raw)

    result = asyncio.run(
        changelog.restore_partitions(FakeConsumer(records, per_fetch), {TP: (start, apply)})
    )
    assert dict(store.items()) == expected
    assert result[TP].records == len(records) - start
    assert result[TP].end_offset == len(records)
    assert not store.has_changes(), "a restore writes nothing back to the changelog"
    assert "restoring rule state" in capsys.readouterr().err
