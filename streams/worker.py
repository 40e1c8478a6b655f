"""The worker's I/O loop: poll a batch, process it, produce the outputs, buffer the rows, and
commit offsets only after the rows that hold those events are in ClickHouse.

The order of a checkpoint, written down once (quix-streams' ``checkpoint.py``):
  1. insert every buffered row (one columnar insert per table) — retried while ClickHouse is away;
  2. flush the producer, so every decision, alert and dead letter of those events is in Kafka;
  3. commit the consumer offsets covered by the rows of step 1.
A crash anywhere before 3 redelivers the events; event_id keys (ReplacingMergeTree, deterministic
alert and dead-letter ids) make the redelivery harmless.

Gate decisions do not wait for ClickHouse: they are produced as soon as their batch is processed
(step 2 only *confirms* delivery). While ClickHouse is down the worker keeps deciding until the
row buffer reaches its bound, then pauses consumption (backpressure) and resumes when inserts work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from sinks import SinkDataError, SinkUnavailable, Writer
from streams.processor import BatchResult, EventProcessor
from streams.publish import BatchPublisher

log = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]
Offsets = dict[TopicPartition, int]


class _Checkpoint:
    """Rows and the offsets they cover, since the last commit."""

    def __init__(self) -> None:
        self.rows: Rows = {}
        self.offsets: Offsets = {}
        self.row_count = 0
        self.started = time.monotonic()

    def add(self, result: BatchResult, offsets: Offsets) -> None:
        for table, rows in result.rows.items():
            self.rows.setdefault(table, []).extend(rows)
            self.row_count += len(rows)
        self.offsets.update(offsets)

    def empty(self) -> bool:
        return not self.rows and not self.offsets


class _Rebalance(ConsumerRebalanceListener):
    def __init__(
        self,
        on_revoked: Callable[[], Awaitable[None]],
        on_assigned: Callable[[list[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._on_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "partitions assigned 分配分区: %s", sorted((tp.topic, tp.partition) for tp in assigned)
        )
        await self._on_assigned(list(assigned))


class PipelineWorker:
    """Consumes the event topics as one consumer-group member."""

    def __init__(
        self,
        settings: Settings,
        processor: EventProcessor,
        writer: Writer,
        metrics: Metrics,
        *,
        on_result: Callable[[BatchResult], None] | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._s = settings
        self._processor = processor
        self._writer = writer
        self._metrics = metrics
        self._on_result = on_result
        self._clock_ms = clock_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._pending = _Checkpoint()
        self._flushing: asyncio.Task[None] | None = None
        self._paused = False
        self._stopping = asyncio.Event()
        self.committed_events = 0
        self.ticks = 0  # timer runs (tests wait for one after a backlog)
        self._needs_warm_up: list[TopicPartition] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._s.kafka_bootstrap,
            linger_ms=2,
            max_batch_size=256 * 1024,
            acks=1,
        )
        await self._producer.start()
        self._publisher = BatchPublisher(self._producer)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._s.kafka_bootstrap,
            group_id=self._s.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_wait_ms=max(1, int(self._s.batch_within_s * 1000)),
        )
        await self._consumer.start()
        self._consumer.subscribe(
            self._processor.topics, listener=_Rebalance(self._checkpoint, self._assigned)
        )

    async def stop(self) -> None:
        """Stop cleanly: finish the checkpoint (rows, producer, commit), then close."""
        self._stopping.set()
        try:
            await self._checkpoint()
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        # aiokafka may already be fetching while this callback runs, so the rebuild happens in
        # the loop, before the next batch is processed
        self._needs_warm_up.extend(assigned)

    # -- state recovery ------------------------------------------------------------------------
    async def _warm_up(self, assigned: list[TopicPartition]) -> None:
        """Rebuild the rules' window state from what this group already committed on the newly
        assigned partitions: each topic from its look-back horizon up to the committed offset,
        outputs discarded. Events the engine already holds are recognised by event_id."""
        assert self._consumer is not None
        t = self._s.topics
        horizon_s = {
            t.gate_scans: self._s.warmup_scans_s,
            t.temperature_readings: self._s.warmup_readings_s,
            t.health_reports: self._s.warmup_reports_s,
        }
        # Kafka timestamps are when the events were produced: wall clock, not the rules' clock
        now = int(time.time() * 1000)
        ends: dict[TopicPartition, int] = {}
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            if committed and horizon_s.get(tp.topic, 0) > 0:
                ends[tp] = committed
        if not ends:
            return
        found = await self._consumer.offsets_for_times(
            {tp: max(0, now - horizon_s[tp.topic] * 1000) for tp in ends}
        )
        starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in ends}
        todo = {tp: end for tp, end in ends.items() if starts[tp] < end}
        if not todo:
            return
        began = time.monotonic()
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._s.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await reader.start()
        applied = 0
        try:
            reader.assign(list(todo))
            for tp in todo:
                reader.seek(tp, starts[tp])
            deadline = time.monotonic() + 120  # never hold a rebalance longer than this
            while todo and time.monotonic() < deadline:
                batches = await reader.getmany(timeout_ms=500, max_records=self._s.batch_max)
                chunk: list[Any] = []
                for tp, messages in batches.items():
                    end = todo.get(tp)
                    if end is None:
                        continue
                    chunk.extend(m for m in messages if m.offset < end)
                    if messages and messages[-1].offset + 1 >= end:
                        del todo[tp]
                applied += self._processor.warm_up(chunk)
        finally:
            await reader.stop()
        if todo:
            log.warning(
                "state rebuild stopped at its time limit; %d partitions incomplete", len(todo)
            )
        log.info(
            "window state rebuilt from %d committed events in %.1fs 已从已提交事件恢复窗口状态",
            applied,
            time.monotonic() - began,
        )

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        assert self._consumer is not None
        last_tick = 0.0
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=int(self._s.batch_within_s * 1000), max_records=self._s.batch_max
            )
            if self._needs_warm_up:
                assigned, self._needs_warm_up = self._needs_warm_up, []
                await self._warm_up(assigned)
            if batches:
                messages = [m for msgs in batches.values() for m in msgs]
                offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
                result = self._processor.process(messages)
                await self._send(result)
                oldest_ms = min(m.timestamp for m in messages)
                self._metrics.decision_lag_seconds.observe(max(0.0, time.time() - oldest_ms / 1000))
                self._pending.add(result, offsets)
            now = time.monotonic()
            if now - last_tick >= 1.0 and await self._caught_up():
                last_tick = now
                self.ticks += 1
                tick = self._processor.tick(self._clock_ms())
                if tick.produce or tick.rows:
                    await self._send(tick)
                    self._pending.add(tick, {})
            await self._maybe_flush()

    async def _caught_up(self) -> bool:
        """Timers run against the wall clock only when there is no backlog: while catching up,
        a recheck or a report still in the queue is not yet "missed"."""
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:  # no fetch answered for it yet: its backlog is unknown
                return False
            if await self._consumer.position(tp) < high:
                return False
        return True

    async def _send(self, result: BatchResult) -> None:
        assert self._publisher is not None
        if result.produce:
            await self._publisher.publish(result.produce)
        if self._on_result is not None:
            self._on_result(result)

    # -- checkpointing -------------------------------------------------------------------------
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
        buffered = self._pending.row_count
        self._metrics.sink_buffered_rows.set(buffered)
        if self._flushing is None and self._due():
            snapshot, self._pending = self._pending, _Checkpoint()
            self._flushing = asyncio.create_task(self._commit(snapshot))
        # backpressure: stop polling while the buffer is over its bound
        over = self._pending.row_count >= self._s.sink_max_buffered_rows
        if over and not self._paused:
            self._set_paused(True)
        elif not over and self._paused:
            self._set_paused(False)
        if self._paused and self._flushing is not None:
            await asyncio.wait({self._flushing}, timeout=0.5)

    def _set_paused(self, paused: bool) -> None:
        assert self._consumer is not None
        parts = self._consumer.assignment()
        if paused:
            self._consumer.pause(*parts)
            log.warning("sink behind, consumption paused 写入积压，暂停消费")
        else:
            self._consumer.resume(*parts)
            log.info("consumption resumed 恢复消费")
        self._paused = paused
        self._metrics.consumer_paused.set(1 if paused else 0)

    async def _checkpoint(self) -> None:
        """Flush everything pending now (on stop and before partitions are revoked)."""
        if self._flushing is not None:
            await self._flushing
            self._flushing = None
        snapshot, self._pending = self._pending, _Checkpoint()
        if not snapshot.empty():
            await self._commit(snapshot)

    async def _commit(self, snapshot: _Checkpoint) -> None:
        started = time.monotonic()
        await self._write_rows(snapshot.rows)
        assert self._producer is not None and self._consumer is not None
        await self._producer.flush()
        await self._commit_offsets(snapshot.offsets)
        self.committed_events += snapshot.row_count
        self._metrics.sink_flush_seconds.observe(time.monotonic() - started)

    async def _commit_offsets(self, offsets: Offsets) -> None:
        """Step 3 of the checkpoint: only offsets of partitions still assigned to us."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in assigned}
        if mine:
            await self._consumer.commit(mine)

    async def _write_rows(self, rows: Rows) -> None:
        loop = asyncio.get_running_loop()
        for table, table_rows in rows.items():
            backoff = 0.2
            while True:
                try:
                    written = await loop.run_in_executor(
                        None, write_isolating_bad_rows, self._writer, table, table_rows
                    )
                    break
                except SinkUnavailable as err:
                    self._metrics.sink_retries.inc()
                    log.warning(
                        "ClickHouse unavailable, retrying %s in %.1fs (数据库不可用，重试): %s",
                        table,
                        backoff,
                        err,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
            good, rejected = written
            self._metrics.rows_written.labels(table=table).inc(good)
            self._metrics.sink_batch_rows.labels(table=table).observe(good)
            if rejected:
                log.error(
                    "ClickHouse rejected %d rows of %s (数据库拒绝写入): %s",
                    len(rejected),
                    table,
                    rejected[0][1],
                )
                letters = self._processor.sink_rejections(table, rejected, self._clock_ms())
                await self._send(letters)
                if table != "dead_letters":
                    self._pending.add(letters, {})


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
