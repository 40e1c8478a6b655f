"""``TableBatcher``: rows per table until a batch is big or old enough, then one insert each.

ClickHouse wants few, large inserts (about one per second per table, thousands of rows each).
The batcher is bookkeeping only: the caller decides when to call ``flush`` (usually in an
executor thread, since inserts block) and pauses consumption while ``buffered_rows`` is above its
bound. A buffer is cleared only after its insert returned, so a failed flush loses nothing: the
caller retries it (``SinkUnavailable``) or takes the rows out with ``drain`` (``SinkDataError``).
Rows added while a flush is running are kept for the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sinks.base import Writer

Row = Mapping[str, Any]


@dataclass
class _Buffer:
    rows: list[Row] = field(default_factory=list)
    since: float | None = None  # when the oldest buffered row arrived (monotonic seconds)


class TableBatcher:
    def __init__(self, *, max_rows: int, flush_s: float) -> None:
        if max_rows < 1 or flush_s <= 0:
            raise ValueError(f"need max_rows >= 1 and flush_s > 0, got {max_rows}, {flush_s}")
        self.max_rows = max_rows
        self.flush_s = flush_s
        self._buffers: dict[str, _Buffer] = {}
        self._lock = threading.Lock()

    @property
    def buffered_rows(self) -> int:
        """Rows waiting in all tables (the caller's backpressure signal)."""
        with self._lock:
            return sum(len(b.rows) for b in self._buffers.values())

    def buffered(self) -> dict[str, int]:
        """Rows waiting per table (tables with none left out)."""
        with self._lock:
            return {table: len(b.rows) for table, b in self._buffers.items() if b.rows}

    def add(self, table: str, rows: Iterable[Row], now: float | None = None) -> None:
        """Buffer ``rows`` for ``table``; ``now`` is monotonic seconds (default: the clock)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            buffer = self._buffers.setdefault(table, _Buffer())
            before = len(buffer.rows)
            buffer.rows.extend(rows)
            if before == 0 and buffer.rows:
                buffer.since = now

    def due(self, now: float | None = None) -> bool:
        """True when some table holds ``max_rows`` rows or its oldest row is ``flush_s`` old."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return any(
                len(b.rows) >= self.max_rows
                or (b.since is not None and b.rows and now - b.since >= self.flush_s)
                for b in self._buffers.values()
            )

    def flush(self, writer: Writer, now: float | None = None) -> dict[str, int]:
        """Write every non-empty buffer as one insert; return rows written per table.

        Stops at the first failing insert and re-raises its error: tables written before it are
        cleared, that table and the ones after it keep their rows.
        """
        now = time.monotonic() if now is None else now
        written: dict[str, int] = {}
        with self._lock:
            snapshot = {t: list(b.rows) for t, b in self._buffers.items() if b.rows}
        for table, rows in snapshot.items():
            written[table] = writer.write(table, rows)
            self._forget(table, len(rows), now)
        return written

    def drain(self, table: str) -> list[Row]:
        """Take every buffered row of ``table`` out (e.g. to dead-letter a rejected batch)."""
        with self._lock:
            buffer = self._buffers.pop(table, None)
        return [] if buffer is None else buffer.rows

    def _forget(self, table: str, count: int, flush_started: float) -> None:
        """Drop the first ``count`` rows of ``table`` (the ones just written)."""
        with self._lock:
            buffer = self._buffers.get(table)
            if buffer is None:
                return
            del buffer.rows[:count]
            # Rows left arrived during the flush, so they are younger than its start.
            buffer.since = flush_started if buffer.rows else None
