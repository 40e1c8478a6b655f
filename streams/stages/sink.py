"""The sink stage: Kafka → ClickHouse, on its own consumer group (``<app_id>-sink``) and in its
own process, so nothing it does — an outage, a retry, a pause — reaches a gate decision.

It reads, ``read_committed`` (aborted decide transactions never reach the database):
- ``<app_id>-decide-events``: every *valid* device event, once (the route step dead-lettered
  the rest); header ``src`` names its record, ``redact=1`` marks a FACE scan without consent;
- ``gate.decisions``, ``alerts``, ``dead.letters``: the decide stage's outputs.

The order of a checkpoint, written down once (quix-streams' ``checkpoint.py``):
  1. insert every buffered row (one columnar insert per table) — retried with backoff while
     ClickHouse is away; rows ClickHouse refuses as data are bisected out and stored as
     dead-letter rows;
  2. commit the consumer offsets covered by the rows of step 1.
A crash before 2 redelivers the rows; event_id keys (ReplacingMergeTree, deterministic alert and
dead-letter ids) make the redelivery harmless. The rows of a checkpoint carry one ``ingested_at``
stamped before the first try, so a retried insert is the same block and the server's insert
deduplication drops it if the first try had in fact landed (replicated tables on a cluster,
``sinks/cluster.py``; ``non_replicated_deduplication_window`` on one current server). While the
buffer is over its bound the sink pauses its own consumption (backpressure); the decide stage
does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from sinks import SinkDataError, SinkUnavailable, Writer
from sinks.rows import INGESTED_AT
from streams.processor import _redacted, rejected_row
from streams.stages.route import REDACT, SRC

log = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]
Offsets = dict[TopicPartition, int]

TABLE_OF_RECORD = {
    "GateScan": "gate_scans",
    "TemperatureReading": "temperature_readings",
    "HealthReport": "health_reports",
    "GateDecision": "gate_decisions",
    "Alert": "alerts",
    "DeadLetter": "dead_letters",
}


class _Checkpoint:
    """Rows and the offsets they cover, since the last commit."""

    def __init__(self) -> None:
        self.rows: Rows = {}
        self.offsets: Offsets = {}
        self.row_count = 0
        self.started = time.monotonic()

    def add(self, rows: Rows, offsets: Offsets) -> None:
        for table, table_rows in rows.items():
            self.rows.setdefault(table, []).extend(table_rows)
            self.row_count += len(table_rows)
        self.offsets.update(offsets)

    def empty(self) -> bool:
        return not self.rows and not self.offsets

    def stamp(self, ingested_at_ms: int) -> None:
        """Give every row the same ``ingested_at``, once: the inserts of this checkpoint, and
        every retry of them, then send identical blocks, and a retry of an insert that had in
        fact landed is dropped by the server (insert deduplication: replicated tables,
        ``non_replicated_deduplication_window``) instead of written twice."""
        for table_rows in self.rows.values():
            for row in table_rows:
                row.setdefault(INGESTED_AT, ingested_at_ms)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, stage: SinkStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stage._revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("sink partitions assigned 写入分区分配: %d", len(assigned))


class SinkStage:
    """One member of the sink group; ``start()``, ``run()``, ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        writer: Writer,
        metrics: Metrics,
        *,
        consumer_factory: Callable[..., Any] = AIOKafkaConsumer,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._s = settings
        self._codec = codec
        self._writer = writer
        self._metrics = metrics
        self._consumer_factory = consumer_factory
        self._clock_ms = clock_ms
        t = settings.topics
        self._events_topic = settings.decide_events_topic
        self._record_of_topic = {
            t.gate_decisions: "GateDecision",
            t.alerts: "Alert",
            t.dead_letters: "DeadLetter",
        }
        self._consumer: Any = None
        self._pending = _Checkpoint()
        self._flushing: asyncio.Task[None] | None = None
        self._inserting = False
        self._paused = False
        self._stopping = asyncio.Event()
        self.committed_rows = 0
        self.skipped = 0
        self._outage = False  # an insert is retrying because ClickHouse is unreachable
        self._outage_logged = -math.inf  # monotonic time of the last "unavailable" line

    @property
    def topics(self) -> list[str]:
        return [self._events_topic, *self._record_of_topic]

    async def start(self) -> None:
        self._consumer = self._consumer_factory(
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
            group_id=self._s.sink_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_wait_ms=200,
        )
        await self._consumer.start()
        self._consumer.subscribe(self.topics, listener=_Listener(self))

    async def stop(self) -> None:
        """Stop cleanly: write and commit what is pending (bounded), then close."""
        self._stopping.set()
        try:
            await asyncio.wait_for(self._checkpoint(), timeout=30)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("sink stopped with rows not written; they are read again next start")
        finally:
            if self._flushing is not None:
                self._flushing.cancel()
            if self._consumer is not None:
                await self._consumer.stop()

    # -- rows ----------------------------------------------------------------------------------
    def rows_of(self, messages: Sequence[Any]) -> Rows:
        """Decode ``messages`` into rows per table. An undecodable message is skipped and
        counted (the decide stage dead-lettered it; nothing here can do better)."""
        rows: Rows = {}
        decode = self._codec.decode
        for m in messages:
            headers = dict(m.headers or ())
            if m.topic == self._events_topic:
                src = headers.get(SRC)
                name = self._record_name_of_source(src.decode() if src else "")
            else:
                name = self._record_of_topic.get(m.topic)
            if name is None or m.value is None:
                self.skipped += 1
                continue
            try:
                record = decode(name, m.value, validate=False)
            except InvalidEvent as err:
                self.skipped += 1
                log.warning(
                    "sink skipped an undecodable %s at %s:%d: %s", name, m.topic, m.offset, err
                )
                continue
            if name == "GateScan" and headers.get(REDACT) == b"1":
                record = _redacted(record)
            rows.setdefault(TABLE_OF_RECORD[name], []).append(record)
        return rows

    def _record_name_of_source(self, topic: str) -> str | None:
        t = self._s.topics
        return {
            t.gate_scans: "GateScan",
            t.temperature_readings: "TemperatureReading",
            t.health_reports: "HealthReport",
        }.get(topic)

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        consumer = self._consumer
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=self._s.batch_max)
            if batches:
                assigned = consumer.assignment()
                messages = [m for tp, ms in batches.items() if tp in assigned for m in ms]
                offsets = {
                    tp: ms[-1].offset + 1 for tp, ms in batches.items() if ms and tp in assigned
                }
                self._pending.add(self.rows_of(messages), offsets)
            await self._maybe_flush()

    def _due(self) -> bool:
        p = self._pending
        if p.empty():
            return False
        return (
            p.row_count >= self._s.sink_batch_rows
            or time.monotonic() - p.started >= self._s.sink_flush_s
        )

    async def _maybe_flush(self) -> None:
        if self._flushing is not None and self._flushing.done():
            task, self._flushing = self._flushing, None
            task.result()  # re-raise a failure that is not retryable
        self._metrics.sink_buffered_rows.set(self._pending.row_count)
        if self._flushing is None and self._due():
            snapshot, self._pending = self._pending, _Checkpoint()
            self._flushing = asyncio.create_task(self._commit(snapshot))
        # backpressure: stop polling while the buffer is over its bound (this stage only)
        over = self._pending.row_count >= self._s.sink_max_buffered_rows
        if over != self._paused:
            self._set_paused(over)
        if self._paused and self._flushing is not None:
            await asyncio.wait({self._flushing}, timeout=0.5)

    def _set_paused(self, paused: bool) -> None:
        parts = self._consumer.assignment()
        if paused:
            self._consumer.pause(*parts)
            log.warning("ClickHouse behind, sink paused 写入积压，暂停读取 (decisions continue)")
        else:
            self._consumer.resume(*parts)
            log.info("sink resumed 恢复读取")
        self._paused = paused
        self._metrics.consumer_paused.set(1 if paused else 0)

    async def _revoked(self) -> None:
        """Before the group moves partitions: an insert that is running finishes (its offsets
        are then committed); one that is waiting to retry is given up — those rows, and every
        row not yet written, are read again by whoever owns the partitions next. A ClickHouse
        outage therefore never holds a rebalance of the sink group for long."""
        if self._flushing is not None:
            deadline = time.monotonic() + 10
            while self._inserting and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if not self._flushing.done():
                self._flushing.cancel()
            with contextlib.suppress(BaseException):
                await self._flushing
            self._flushing = None
        self._pending = _Checkpoint()
        if self._paused:
            self._paused = False
            self._metrics.consumer_paused.set(0)

    async def _checkpoint(self) -> None:
        if self._flushing is not None:
            await self._flushing
            self._flushing = None
        snapshot, self._pending = self._pending, _Checkpoint()
        if not snapshot.empty():
            await self._commit(snapshot)

    async def _commit(self, snapshot: _Checkpoint) -> None:
        started = time.monotonic()
        snapshot.stamp(self._clock_ms())
        await self._write_rows(snapshot.rows)
        await self._commit_offsets(snapshot.offsets)
        self.committed_rows += snapshot.row_count
        self._metrics.sink_flush_seconds.observe(time.monotonic() - started)

    async def _commit_offsets(self, offsets: Offsets) -> None:
        """Step 2 of the checkpoint: only offsets of partitions still assigned to us."""
        assigned = self._consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in assigned}
        if mine:
            await self._consumer.commit(mine)

    async def _write_rows(self, rows: Rows) -> None:
        loop = asyncio.get_running_loop()
        waiting = self._metrics.sink_waiting_for_clickhouse
        for table, table_rows in rows.items():
            backoff = 0.2
            while True:
                try:
                    self._inserting = True
                    try:
                        good, rejected = await loop.run_in_executor(
                            None, write_isolating_bad_rows, self._writer, table, table_rows
                        )
                    finally:
                        self._inserting = False
                    break
                except SinkUnavailable as err:
                    self._metrics.sink_retries.inc()
                    waiting.set(1)
                    self._outage = True
                    # once when the outage starts, then at most once a minute (bounded noise)
                    now = time.monotonic()
                    if now - self._outage_logged >= 60:
                        self._outage_logged = now
                        log.warning(
                            "ClickHouse 不可用，写入阶段等待重试（%s）/ ClickHouse unavailable,"
                            " sink waiting, retrying %s (backoff up to 5 s): %s",
                            table,
                            table,
                            str(err).splitlines()[0] if str(err) else type(err).__name__,
                        )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            if self._outage:
                self._outage = False
                self._outage_logged = -math.inf
                waiting.set(0)
                log.warning("ClickHouse 已恢复，写入继续 / ClickHouse back, sink writing again")
            self._metrics.rows_written.labels(table=table).inc(good)
            self._metrics.sink_batch_rows.labels(table=table).observe(good)
            if rejected:
                log.error(
                    "ClickHouse rejected %d rows of %s (数据库拒绝写入): %s",
                    len(rejected),
                    table,
                    rejected[0][1],
                )
                if table != "dead_letters":
                    now = self._clock_ms()
                    await self._write_rows(
                        {"dead_letters": [rejected_row(table, r, why, now) for r, why in rejected]}
                    )

    def rows_written(self) -> Mapping[str, float]:
        return {
            table: float(self._metrics.rows_written.labels(table=table)._value.get())
            for table in TABLE_OF_RECORD.values()
        }


def write_isolating_bad_rows(
    writer: Writer, table: str, rows: list[dict[str, Any]]
) -> tuple[int, list[tuple[dict[str, Any], str]]]:
    """Insert ``rows``; when ClickHouse rejects the batch as data, bisect to find the bad rows so
    the good ones are written and the bad ones returned with the server's reason."""
    try:
        return writer.write(table, rows), []
    except SinkDataError as err:
        if len(rows) == 1:
            return 0, [(rows[0], err.reason)]
        mid = len(rows) // 2
        a_good, a_bad = write_isolating_bad_rows(writer, table, rows[:mid])
        b_good, b_bad = write_isolating_bad_rows(writer, table, rows[mid:])
        return a_good + b_good, a_bad + b_bad
