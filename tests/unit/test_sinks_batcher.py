"""sinks.batcher: batches by size and age; a buffer is cleared only after its insert returned."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from sinks.batcher import TableBatcher
from sinks.errors import SinkDataError, SinkUnavailable


class FakeWriter:
    database = "fx"

    def __init__(self, fail: Mapping[str, Exception] | None = None) -> None:
        self.fail = dict(fail or {})
        self.inserts: list[tuple[str, list[Mapping[str, Any]]]] = []
        self.on_write: Any = None

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if self.on_write:
            self.on_write()
        if table in self.fail:
            raise self.fail[table]
        self.inserts.append((table, list(rows)))
        return len(rows)

    def execute(self, sql: str) -> None: ...
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return []

    def server_version(self) -> tuple[int, ...]:
        return (26, 9)

    def close(self) -> None: ...


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"event_id": f"e{i}"} for i in range(start, start + n)]


@pytest.mark.parametrize(
    ("adds", "now", "due"),
    [
        pytest.param([], 100.0, False, id="nothing buffered is never due"),
        pytest.param([("a", 3, 0.0)], 0.5, False, id="small and young is not due"),
        pytest.param([("a", 5, 0.0)], 0.0, True, id="max_rows in one table is due"),
        pytest.param([("a", 3, 0.0), ("b", 3, 0.0)], 0.5, False, id="size counts per table"),
        pytest.param([("a", 1, 0.0)], 1.0, True, id="flush_s old is due"),
        pytest.param([("a", 1, 0.0), ("a", 1, 0.9)], 1.0, True, id="age is the oldest row's"),
        pytest.param([("a", 0, 0.0), ("a", 1, 0.9)], 1.0, False, id="an empty add starts no clock"),
    ],
)
def test_due(adds: list[tuple[str, int, float]], now: float, due: bool) -> None:
    batcher = TableBatcher(max_rows=5, flush_s=1.0)
    for table, n, at in adds:
        batcher.add(table, rows(n), now=at)
    assert batcher.due(now) is due


def test_flush_writes_one_insert_per_table_and_clears() -> None:
    batcher = TableBatcher(max_rows=10, flush_s=1.0)
    batcher.add("gate_scans", rows(2), now=0.0)
    batcher.add("alerts", rows(1), now=0.0)
    batcher.add("gate_scans", rows(1, start=2), now=0.1)
    writer = FakeWriter()
    assert batcher.flush(writer, now=2.0) == {"gate_scans": 3, "alerts": 1}
    assert [(t, len(r)) for t, r in writer.inserts] == [("gate_scans", 3), ("alerts", 1)]
    assert writer.inserts[0][1] == rows(3)
    assert batcher.buffered_rows == 0
    assert not batcher.due(100.0)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(SinkUnavailable("connection refused"), id="server down"),
        pytest.param(SinkDataError("Cannot parse"), id="rows rejected"),
    ],
)
def test_a_failed_insert_keeps_its_rows_and_the_rows_after_it(error: Exception) -> None:
    batcher = TableBatcher(max_rows=10, flush_s=1.0)
    batcher.add("gate_scans", rows(2), now=0.0)
    batcher.add("alerts", rows(3), now=0.0)
    batcher.add("dead_letters", rows(1), now=0.0)
    with pytest.raises(type(error)):
        batcher.flush(FakeWriter(fail={"alerts": error}), now=1.0)
    assert batcher.buffered() == {"alerts": 3, "dead_letters": 1}
    retry = FakeWriter()
    assert batcher.flush(retry, now=2.0) == {"alerts": 3, "dead_letters": 1}
    assert batcher.buffered_rows == 0


def test_rows_added_during_a_flush_wait_for_the_next_one() -> None:
    batcher = TableBatcher(max_rows=10, flush_s=1.0)
    batcher.add("gate_scans", rows(2), now=0.0)
    writer = FakeWriter()
    writer.on_write = lambda: batcher.add("gate_scans", rows(1, start=2), now=1.5)
    assert batcher.flush(writer, now=1.0) == {"gate_scans": 2}
    assert batcher.buffered() == {"gate_scans": 1}
    assert not batcher.due(1.9) and batcher.due(2.0)
    assert batcher.flush(FakeWriter(), now=2.0) == {"gate_scans": 1}


def test_drain_hands_back_a_rejected_batch() -> None:
    batcher = TableBatcher(max_rows=10, flush_s=1.0)
    batcher.add("alerts", rows(2), now=0.0)
    assert batcher.drain("alerts") == rows(2)
    assert batcher.drain("alerts") == []
    assert batcher.buffered_rows == 0


def test_buffered_rows_is_the_backpressure_signal() -> None:
    batcher = TableBatcher(max_rows=10, flush_s=1.0)
    batcher.add("a", rows(4), now=0.0)
    batcher.add("b", rows(7), now=0.0)
    assert batcher.buffered_rows == 11


@pytest.mark.parametrize(
    ("max_rows", "flush_s"),
    [pytest.param(0, 1.0, id="zero rows"), pytest.param(10, 0.0, id="zero seconds")],
)
def test_nonsense_bounds_are_refused(max_rows: int, flush_s: float) -> None:
    with pytest.raises(ValueError):
        TableBatcher(max_rows=max_rows, flush_s=flush_s)
