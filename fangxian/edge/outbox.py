"""The edge's durable outbox: a record is on disk (SQLite WAL, ``synchronous=FULL`` — the commit
fsyncs the log) before the device that sent it is answered, and leaves the outbox only as
"produced" once Kafka acknowledged it (acks=all, idempotent producer).

- ``append`` is a group commit: requests arriving together share one transaction and one fsync.
  Rows are keyed by ``event_id``; a resend or an offline replay of an event already here is
  *not* appended again (``INSERT OR IGNORE``) and the caller learns it was a duplicate.
- produced rows are kept for ``keep_s`` (the dedupe window for late resends), then pruned.
- fallback answers are remembered (``fallbacks``) until the core's decision for the event is
  seen, so a disagreement can be raised even after a restart.

The order of things, written once: parse → pseudonymise → ``append`` (fsync) → answer the
device → produce → ``mark_produced``. A crash anywhere after ``append`` loses nothing the
device was told; a crash before it means the device got no answer and resends.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    produced_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (produced_ms, seq);
CREATE TABLE IF NOT EXISTS fallbacks (
    event_id TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    community_id TEXT NOT NULL,
    gate_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    answered_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutRow:
    event_id: str
    record: str
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    event_id: str
    record: str
    topic: str
    key: bytes
    value: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class FallbackAnswer:
    event_id: str
    decision: str
    reasons: tuple[str, ...]
    community_id: str
    gate_id: str
    device_id: str
    subject_id: str
    event_time: int
    answered_ms: int


class Outbox:
    """One SQLite file; all access from one writer thread (``asyncio.to_thread`` under a lock)."""

    def __init__(self, path: str | Path, *, keep_s: float = 7 * 86400) -> None:
        self.path = Path(path)
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # every commit fsyncs the WAL
        self._db.executescript(_SCHEMA)
        self._queue: list[tuple[Sequence[OutRow], asyncio.Future[list[bool]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.appended = 0
        self.duplicates = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- synchronous core (one thread at a time) ----------------------------------------

    def append_now(self, batches: Sequence[Sequence[OutRow]]) -> list[list[bool]]:
        """Append in one transaction; per row: new (True) or already here (False)."""
        now = int(time.time() * 1000)
        out: list[list[bool]] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for rows in batches:
                    flags = []
                    for r in rows:
                        cur = db.execute(
                            "INSERT OR IGNORE INTO outbox (event_id, record, topic, key, value, "
                            "created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                            (r.event_id, r.record, r.topic, r.key, r.value, now),
                        )
                        flags.append(cur.rowcount == 1)
                    out.append(flags)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        n_new = sum(f for flags in out for f in flags)
        self.appended += n_new
        self.duplicates += sum(len(f) for f in out) - n_new
        return out

    def pending(self, limit: int = 500) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, record, topic, key, value, created_ms FROM outbox "
                "WHERE produced_ms IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(*r) for r in rows]

    def mark_produced(self, seqs: Sequence[int]) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE outbox SET produced_ms = ? WHERE seq = ?", [(now, s) for s in seqs]
            )
            self._db.execute("COMMIT")

    def prune(self) -> int:
        cutoff = int((time.time() - self.keep_s) * 1000)
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE produced_ms IS NOT NULL AND produced_ms < ?", (cutoff,)
            )
            self._db.execute("DELETE FROM fallbacks WHERE answered_ms < ?", (cutoff,))
        return cur.rowcount

    def depth_and_age(self) -> tuple[int, float]:
        """Rows not yet produced, and the age in seconds of the oldest."""
        with self._lock:
            n, oldest = self._db.execute(
                "SELECT count(*), min(created_ms) FROM outbox WHERE produced_ms IS NULL"
            ).fetchone()
        return int(n), 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    def is_known(self, event_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,))
            return row.fetchone() is not None

    def remember_fallback(self, answer: FallbackAnswer) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO fallbacks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    answer.event_id,
                    answer.decision,
                    ",".join(answer.reasons),
                    answer.community_id,
                    answer.gate_id,
                    answer.device_id,
                    answer.subject_id,
                    answer.event_time,
                    answer.answered_ms,
                ),
            )

    def fallbacks(self) -> dict[str, FallbackAnswer]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM fallbacks").fetchall()
        return {
            r[0]: FallbackAnswer(
                r[0],
                r[1],
                tuple(x for x in r[2].split(",") if x),
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
            )
            for r in rows
        }

    def forget_fallback(self, event_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM fallbacks WHERE event_id = ?", (event_id,))

    # --- asyncio group commit ----------------------------------------------------------------

    async def append(self, rows: Sequence[OutRow]) -> list[bool]:
        """Durably append ``rows`` (with whatever else arrived meanwhile, one fsync)."""
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await asyncio.to_thread(self.append_now, [rows for rows, _ in batch])
            except BaseException as err:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            for (_, future), flags in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(flags)
