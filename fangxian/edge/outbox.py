"""The edge's durable outbox: a record is on disk (SQLite WAL, ``synchronous=FULL`` — the commit
fsyncs the log) before the device that sent it is answered, and leaves the outbox only as
"produced" once Kafka acknowledged it (acks=all, idempotent producer).

- ``append`` is a group commit: requests arriving together share one transaction and one fsync.
  Rows are keyed by ``event_id``; a resend or an offline replay of an event already here is
  *not* appended again (``INSERT OR IGNORE``) and the caller learns it was a duplicate.
- produced rows are kept for ``keep_s`` (the dedupe window for late resends), then pruned.
- fallback answers are remembered (``fallbacks``) until the core's decision for the event is
  seen, so a disagreement can be raised even after a restart. They go through the same group
  commit as the appends: ``remember`` is durable when its future is done (one transaction and
  one fsync for everything queued meanwhile), ``forget`` rides along with the next group
  and is not awaited (a forget lost in a crash only means the decision is read back and the
  answer settled again after the restart).

The order of things, written once: parse → pseudonymise → ``append`` (fsync) → answer the
device → produce → ``mark_produced``. A crash anywhere after ``append`` loses nothing the
device was told; a crash before it means the device got no answer and resends.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class _Job:
    """One caller's share of a group commit, applied in queue order."""

    rows: Sequence[OutRow] = ()
    remember: Sequence[FallbackAnswer] = ()
    forget: Sequence[str] = ()


def _fallback_params(a: FallbackAnswer) -> tuple[object, ...]:
    return (
        a.event_id,
        a.decision,
        ",".join(a.reasons),
        a.community_id,
        a.gate_id,
        a.device_id,
        a.subject_id,
        a.event_time,
        a.answered_ms,
    )


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
        self._queue: list[tuple[_Job, asyncio.Future[list[bool]] | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.appended = 0
        self.duplicates = 0
        self.commits = 0  # transactions of the group commit (one fsync each)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- synchronous core (one thread at a time) ----------------------------------------

    def append_now(self, batches: Sequence[Sequence[OutRow]]) -> list[list[bool]]:
        """Append in one transaction; per row: new (True) or already here (False)."""
        return self.commit_now([_Job(rows=rows) for rows in batches])

    def commit_now(self, jobs: Sequence[_Job]) -> list[list[bool]]:
        """Apply ``jobs`` in order in one transaction (one fsync): their rows appended, their
        fallback answers remembered, their forgotten ones deleted; per job, per row: new (True)
        or already here (False)."""
        now = int(time.time() * 1000)
        out: list[list[bool]] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for job in jobs:
                    flags = []
                    for r in job.rows:
                        cur = db.execute(
                            "INSERT OR IGNORE INTO outbox (event_id, record, topic, key, value, "
                            "created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                            (r.event_id, r.record, r.topic, r.key, r.value, now),
                        )
                        flags.append(cur.rowcount == 1)
                    out.append(flags)
                    if job.remember:
                        db.executemany(
                            "INSERT OR IGNORE INTO fallbacks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [_fallback_params(a) for a in job.remember],
                        )
                    if job.forget:
                        db.executemany(
                            "DELETE FROM fallbacks WHERE event_id = ?", [(e,) for e in job.forget]
                        )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.commits += 1
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
        """One answer in its own transaction (tools, tests); the service uses ``remember``."""
        self.commit_now([_Job(remember=(answer,))])

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
        """One forget in its own transaction (tools, tests); the service uses ``forget``."""
        self.commit_now([_Job(forget=(event_id,))])

    # --- asyncio group commit ----------------------------------------------------------------

    async def append(self, rows: Sequence[OutRow], *, forget: Sequence[str] = ()) -> list[bool]:
        """Durably append ``rows`` (with whatever else arrived meanwhile, one fsync); ``forget``:
        remembered fallback answers deleted in the same transaction."""
        return await self._submit(_Job(rows=rows, forget=forget))

    def remember(self, answers: Sequence[FallbackAnswer]) -> asyncio.Future[list[bool]]:
        """Queue ``answers`` for the next group commit *now* (so a later ``forget`` of the same
        event is applied after it); the returned future is done once they are on disk."""
        return self._submit(_Job(remember=answers))

    def forget(self, event_ids: Sequence[str]) -> None:
        """Queue the deletion of remembered answers for the next group commit; not awaited."""
        self._enqueue(_Job(forget=event_ids), None)

    def _submit(self, job: _Job) -> asyncio.Future[list[bool]]:
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._enqueue(job, future)
        return future

    def _enqueue(self, job: _Job, future: asyncio.Future[list[bool]] | None) -> None:
        self._queue.append((job, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await asyncio.to_thread(self.commit_now, [job for job, _ in batch])
            except BaseException as err:
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(err)
                unsettled = sum(len(job.forget) for job, future in batch if future is None)
                if unsettled:  # still remembered: settled again after a restart
                    log.warning(
                        "发件箱提交失败 outbox commit failed (%s): %d fallback answers not "
                        "forgotten",
                        type(err).__name__,
                        unsettled,
                    )
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            for (_, future), flags in zip(batch, results, strict=True):
                if future is not None and not future.done():
                    future.set_result(flags)
