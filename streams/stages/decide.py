"""The decide stage: device events in, gate decisions / alerts / dead letters out, rule state
in Kafka. No ClickHouse here: a database outage cannot slow a gate (docs/topology.md).

One consumer-group member (group ``<app_id>-decide``) reads the three device topics and the
internal ``<app_id>-decide-events`` topic. The range assignor gives a member partition *p* of
every one of these co-partitioned topics together; that set is **task p**:

- *route*: events of device-topic partition *p* are validated and re-keyed by community
  (``streams.stages.route``) into the internal topic — bad ones dead-lettered;
- *rules*: events of internal partition *p* (whole communities, so whole households) go to the
  task's own ``RuleEngine``; its state changes go to changelog partition *p*;
- timers (``tick``) of the task only fire for the communities partition *p* owns.

exactly_once: task *p* has its own transactional producer, ``transactional.id =
<app_id>-decide-<p>``. One transaction per task and batch holds the routed events, the
decisions, alerts and dead letters, the changelog deltas and the input offsets
(``send_offsets_to_transaction``). aiokafka's TxnOffsetCommit (v0) carries no group generation
(KIP-447 fencing by generation is not available), so zombies are fenced the pre-KIP-447 way: a
new owner of task *p* initialises the same transactional id, which aborts the old owner's open
transaction and makes every later write of the old owner fail with ``ProducerFenced``. Only then
does the new owner read the changelog to its end (read_committed) and seek to the committed
offsets. at_least_once (Tansu: no transactions): one idempotent producer; produce → flush →
commit offsets; outputs are deterministic, so a redelivery makes the same records again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import ProducerFenced

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec
from streams.processor import BatchResult, DeadLetterBudget, EventProcessor
from streams.publish import BatchPublisher, OutRecord
from streams.stages.route import Provenance, Router, header_map
from streams.state.changelog import StateChange, TaskState, restore_partitions
from streams.state.store import changelog_key

log = logging.getLogger(__name__)

ClientFactory = Callable[..., Any]
#: group heartbeat: a leaver's partitions move at the others' next one (aiokafka: 3 s)
HEARTBEAT_MS = 500
#: retry of CONCURRENT_TRANSACTIONS while the last transaction's markers are written (aiokafka:
#: 100 ms, most of a decision's latency)
TXN_RETRY_BACKOFF_MS = 10
#: (partition, owns) -> the task's engine; ``owns(community_id)`` is the timer filter
EngineFactory = Callable[[int, Callable[[str], bool]], Any]


def changelog_records(topic: str, partition: int, changes: list[StateChange]) -> list[OutRecord]:
    """Task *p*'s state changes as records of changelog partition *p* (tombstone = deleted)."""
    return [
        OutRecord(topic, changelog_key(store, key), raw, partition=partition)
        for store, key, raw in changes
    ]


class StageError(RuntimeError):
    """The decide stage cannot run with this cluster (a clear message for the operator)."""


@dataclass
class DecideTask:
    """Everything the stage holds for partition *p* of its inputs."""

    partition: int
    engine: Any
    processor: EventProcessor
    producer: Any = None  # the task's transactional producer (exactly_once)
    publisher: BatchPublisher | None = None
    changelog_position: int = 0  # changelog offset up to which the engine's state is restored
    ready: bool = False
    last_tick: float = 0.0
    committed_batches: int = 0
    restored_records: int = 0
    restore_seconds: float = 0.0
    fenced: bool = False

    @property
    def state(self) -> TaskState | None:
        return self.engine if hasattr(self.engine, "take_changes") else None


@dataclass
class TaskBatch:
    """What one poll brought for one task, and what it makes."""

    source: list[Any] = field(default_factory=list)
    internal: list[Any] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    records: list[OutRecord | tuple[str, bytes | None, bytes]] = field(default_factory=list)
    results: list[BatchResult] = field(default_factory=list)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, stage: DecideStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stage._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._stage._assigned(list(assigned))


class DecideStage:
    """One member of the decide group; ``start()``, ``run()``, ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        metrics: Metrics,
        engine_factory: EngineFactory,
        residents: Mapping[str, Any],
        *,
        consumer_factory: ClientFactory = AIOKafkaConsumer,
        producer_factory: ClientFactory = AIOKafkaProducer,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_output: Callable[[int, BatchResult], None] | None = None,
        restore_state: bool = True,
    ) -> None:
        self._s = settings
        # False only for the control of the recovery tests: start every task from nothing
        self._restore_state = restore_state
        self._eos = settings.exactly_once
        self._codec = codec
        self._metrics = metrics
        self._engine_factory = engine_factory
        self._residents = residents
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._clock_ms = clock_ms
        self._on_output = on_output
        t = settings.topics
        self._record_of = {
            t.gate_scans: "GateScan",
            t.temperature_readings: "TemperatureReading",
            t.health_reports: "HealthReport",
        }
        self._events_topic = settings.decide_events_topic
        self._changelog_topic = settings.decide_changelog_topic
        self._inputs = [*self._record_of, self._events_topic]
        self._partitions = settings.event_partitions
        self._router: Router | None = None
        self._budget = DeadLetterBudget(settings.dlq_max_ratio, settings.dlq_min_sample)
        self.tasks: dict[int, DecideTask] = {}
        self._idle: dict[int, DecideTask] = {}  # engines of tasks another member owns now
        self._assignment: set[TopicPartition] = set()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: Any = None
        self._restorer: Any = None
        self._shared_producer: Any = None  # at_least_once
        self._shared_publisher: BatchPublisher | None = None
        self.decided = 0  # decisions committed (tests and the benchmark read it)
        self.routed = 0
        self.ticks = 0

    # -- clients -------------------------------------------------------------------------------
    def _producer_config(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
            "acks": "all",
            "enable_idempotence": self._eos or self._s.producer_idempotence,
            "linger_ms": 2,
            "max_batch_size": 256 * 1024,
            # a transaction that starts while the last one's markers are being written is told
            # CONCURRENT_TRANSACTIONS and retried after this backoff: aiokafka's 100 ms default
            # was most of every decision's latency (two transactions per event, route and rules)
            "retry_backoff_ms": TXN_RETRY_BACKOFF_MS,
        }

    async def start(self) -> None:
        consumer = self._consumer_factory(
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
            group_id=self._s.decide_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            # a member that leaves (a deploy, a scale-in) hands its partitions over at the
            # others' next heartbeat: at aiokafka's default of 3 s, half the gates would wait
            # that long for decisions
            heartbeat_interval_ms=HEARTBEAT_MS,
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_wait_ms=max(1, int(self._s.batch_within_s * 1000)),
        )
        await consumer.start()
        self._consumer = consumer
        counts = await self._partition_counts(consumer)
        if len(set(counts.values())) != 1 or 0 in counts.values():
            await consumer.stop()
            raise StageError(
                "the decide stage needs the same partition count on every input and on the "
                f"changelog (task p reads partition p of each); found {counts} — create the "
                "topics with `fangxian topics create` (决策阶段的主题分区数不一致)"
            )
        self._partitions = next(iter(counts.values()))
        self._router = Router(
            self._codec,
            self._record_of,
            self._events_topic,
            self._partitions,
            self._residents.get,
        )
        self._restorer = self._consumer_factory(
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # it reads to a known end and is reused: a long poll left in flight by the last
            # restore (500 ms by default) would delay the next one by that much
            fetch_max_wait_ms=20,
        )
        await self._restorer.start()
        if not self._eos:
            self._shared_producer = self._producer_factory(**self._producer_config())
            await self._shared_producer.start()
            self._shared_publisher = BatchPublisher(self._shared_producer)
        if self._restore_state and self._s.decide_warm_start:
            await self._warm_start()
        consumer.subscribe(self._inputs, listener=_Listener(self))

    async def _warm_start(self) -> None:
        """Every task's state restored into an idle engine before the member joins its group:
        on assignment a task then reads only what was written to its changelog since."""
        idle = [self._new_task(p) for p in range(self._partitions)]
        await self._restore(idle)
        self._idle.update((task.partition, task) for task in idle)

    async def _restore(self, tasks: Sequence[DecideTask]) -> None:
        """Each task's changelog partition read from its restore position to its end, in one
        restore; the positions move to the ends."""
        of_tp: dict[TopicPartition, DecideTask] = {}
        targets: dict[TopicPartition, tuple[int, Callable[[str, str, bytes | None], None]]] = {}
        for t in tasks:
            if t.state is not None:
                tp = TopicPartition(self._changelog_topic, t.partition)
                of_tp[tp] = t
                targets[tp] = (t.changelog_position, t.state.restore)
        done = await restore_partitions(self._restorer, targets)
        for tp, result in done.items():
            task = of_tp[tp]
            task.changelog_position = result.end_offset
            task.restored_records += result.records
            task.restore_seconds += result.seconds
            if result.records:
                log.info(
                    "task %d state restored 状态已恢复: %d changelog records in %.2fs",
                    tp.partition,
                    result.records,
                    result.seconds,
                )

    async def _partition_counts(self, consumer: Any) -> dict[str, int]:
        cluster = await consumer._client.fetch_all_metadata()
        return {
            topic: len(cluster.partitions_for_topic(topic) or ())
            for topic in [*self._inputs, self._changelog_topic]
        }

    async def stop(self) -> None:
        self._stopping.set()
        async with self._lock:
            for task in list(self.tasks.values()):
                await self._close_producer(task)
            self.tasks.clear()
            for client in (self._consumer, self._restorer, self._shared_producer):
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.stop()

    # -- rebalance -----------------------------------------------------------------------------
    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        """Wait for the batch in flight (its transaction commits or aborts), then suspend the
        tasks: their producers close, their engines are kept in case the task comes back.

        A producer is never kept for a task assigned back: its new producer's InitProducerId
        is also the barrier that waits until the last transaction's markers are written, so
        the committed offsets read after it include that transaction."""
        async with self._lock:
            self._assignment.clear()
            kept = [t for t in self.tasks.values() if t.ready and t.state is not None]
            if kept:
                # no transaction is open now: the changelog's end is the end of our own
                # committed writes, so a task assigned back only reads what others write later
                tps = [TopicPartition(self._changelog_topic, t.partition) for t in kept]
                with contextlib.suppress(Exception):
                    ends = await self._restorer.end_offsets(tps)
                    for t, tp in zip(kept, tps, strict=True):
                        t.changelog_position = max(t.changelog_position, ends[tp])
            for task in self.tasks.values():
                task.ready = False
                await self._close_producer(task)

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "decide partitions assigned 决策分区分配: %s",
            sorted({tp.partition for tp in assigned}),
        )
        async with self._lock:
            self._assignment = set(assigned)
            mine = {tp.partition for tp in assigned}
            for p in list(self.tasks):
                if p not in mine:
                    # another member owns it now; keep the engine idle, so if the task comes
                    # back only what the other member wrote meanwhile is restored
                    task = self.tasks.pop(p)
                    if task.engine is not None and not task.fenced:
                        self._idle[p] = task
            for p in mine:
                if p in self.tasks and self.tasks[p].fenced:
                    del self.tasks[p]
            # the loop sets the tasks up (producer, restore, seek) before their next batch;
            # until then their partitions are paused
            self._consumer.pause(*assigned)

    def _task_tps(self, p: int) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for topic in self._inputs]

    def owns_for(self, p: int) -> Callable[[str], bool]:
        assert self._router is not None
        router = self._router
        return lambda community_id: router.partition_of(community_id) == p

    def _new_task(self, p: int) -> DecideTask:
        engine = self._engine_factory(p, self.owns_for(p))
        return DecideTask(p, engine, EventProcessor(self._s, self._codec, engine, self._metrics))

    async def _prepare(self, p: int) -> DecideTask:
        """Task *p*'s engine and producer; waiting for the producer id is the fence."""
        task = self.tasks.get(p) or self._idle.pop(p, None) or self._new_task(p)
        self.tasks[p] = task
        if not self._eos:
            task.publisher = self._shared_publisher
        else:
            task.producer = self._producer_factory(
                **self._producer_config(),
                transactional_id=self._s.transactional_id(p),
                transaction_timeout_ms=int(self._s.transaction_timeout_s * 2000),
            )
            await task.producer.start()
            await _wait_for_producer_id(task.producer)  # a zombie's open txn is aborted now
            task.publisher = BatchPublisher(task.producer)
        return task

    async def _setup(self, partitions: list[int]) -> None:
        """Make tasks ready: producers (fencing earlier owners) side by side, then every
        task's changelog partition read to its end in one restore, then the inputs seeked to
        the committed offsets and resumed."""
        began = time.monotonic()
        tasks = await asyncio.gather(*(self._prepare(p) for p in partitions))
        prepared = time.monotonic()
        if self._restore_state:
            await self._restore(tasks)
        restored = time.monotonic()
        for task in tasks:
            p = task.partition
            for tp in self._task_tps(p):
                committed = await self._consumer.committed(tp)
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
            self._consumer.resume(*self._task_tps(p))
            task.ready = True
        done_at = time.monotonic()
        log.info(
            "tasks %s ready 任务就绪 in %.2fs (producers %.2fs, restore %.2fs, seek %.2fs)",
            partitions,
            done_at - began,
            prepared - began,
            restored - prepared,
            done_at - restored,
        )

    async def _setup_pending(self) -> None:
        pending = sorted(
            {
                tp.partition
                for tp in self._assignment
                if (t := self.tasks.get(tp.partition)) is None or not (t.ready or t.fenced)
            }
        )
        if pending:
            await self._setup(pending)

    async def _close_producer(self, task: DecideTask) -> None:
        if task.producer is not None:
            producer, task.producer = task.producer, None
            with contextlib.suppress(Exception):
                await producer.stop()
        task.publisher = None

    async def _drop_task(self, p: int, err: BaseException) -> None:
        """A batch of task *p* failed: its engine holds uncommitted changes, so it goes; the
        task is set up again from the changelog (or, when fenced, waits for a new assignment)."""
        task = self.tasks.pop(p, None)
        if task is None:
            return
        await self._close_producer(task)
        fenced = isinstance(err, ProducerFenced)
        log.warning(
            "task %d batch failed (%s), task %s 任务重建: %r",
            p,
            "fenced by a newer owner" if fenced else "will be set up again",
            "dropped" if fenced else "restarts",
            err,
        )
        if fenced:
            self.tasks[p] = DecideTask(p, None, task.processor, fenced=True)
            self._consumer.pause(*[tp for tp in self._task_tps(p) if tp in self._assignment])

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        consumer = self._consumer
        while not self._stopping.is_set():
            batches = await consumer.getmany(
                timeout_ms=int(self._s.batch_within_s * 1000), max_records=self._s.batch_max
            )
            async with self._lock:
                if self._stopping.is_set():
                    break
                try:
                    await self._setup_pending()
                except Exception as err:  # broker away during a setup: retried next round
                    log.warning("task setup failed, retrying 任务初始化失败，重试: %r", err)
                    await asyncio.sleep(1.0)
                    continue
                work = self._split(batches)
                await self._add_ticks(work)
                if work:
                    await self._commit(work)

    def _split(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> dict[int, TaskBatch]:
        work: dict[int, TaskBatch] = {}
        for tp, messages in batches.items():
            task = self.tasks.get(tp.partition)
            if not messages or task is None or not task.ready or tp not in self._assignment:
                continue  # fetched before a rebalance or a setup: read again after the seek
            b = work.setdefault(tp.partition, TaskBatch())
            (b.internal if tp.topic == self._events_topic else b.source).extend(messages)
            b.offsets[tp] = messages[-1].offset + 1
        for p, b in work.items():
            self._make(self.tasks[p], b)
        return work

    def _make(self, task: DecideTask, b: TaskBatch) -> None:
        """The pure part of a task's batch: route, decide, collect the changelog deltas."""
        assert self._router is not None
        if b.source:
            routed, dead = self._router.route(b.source)
            self._budget.record(len(b.source), len(dead))
            b.records.extend(routed)
            self.routed += len(routed)
            if dead:
                letters = task.processor.dead_letter_result(dead)
                b.records.extend(letters.produce)
                b.results.append(letters)
        if b.internal:
            messages = [Provenance(m, header_map(m.headers)) for m in b.internal]
            result = task.processor.process(messages, validated=True)  # by the route step
            b.records.extend(result.produce)
            b.results.append(result)
            oldest_ms = min(m.timestamp for m in b.internal)
            self._metrics.decision_lag_seconds.observe(max(0.0, time.time() - oldest_ms / 1000))
        self._add_changes(task, b)

    def _add_changes(self, task: DecideTask, b: TaskBatch) -> None:
        state = task.state
        if state is not None:
            b.records.extend(
                changelog_records(self._changelog_topic, task.partition, state.take_changes())
            )

    async def _add_ticks(self, work: dict[int, TaskBatch]) -> None:
        """Timers run against the wall clock once per second per task, and only when there is
        no backlog: while catching up, a recheck or a report still queued is not "missed"."""
        now = time.monotonic()
        due = [t for t in self.tasks.values() if t.ready and t.engine and now - t.last_tick >= 1.0]
        if not due or not await self._caught_up():
            return
        now_ms = self._clock_ms()
        for task in due:
            task.last_tick = now
            self.ticks += 1
            result = task.processor.tick(now_ms)
            owns = self.owns_for(task.partition)
            alerts = self._s.topics.alerts
            # a timer of a community this task does not own is another task's (engines that
            # take ``owns=`` never make one; this keeps the guarantee for any engine)
            result.produce = [
                r for r in result.produce if r[0] != alerts or r[1] is None or owns(r[1].decode())
            ]
            b = work.setdefault(task.partition, TaskBatch())
            if result.produce:
                b.records.extend(result.produce)
                b.results.append(result)
            self._add_changes(task, b)
            if not b.records and not b.offsets:
                del work[task.partition]

    async def _caught_up(self) -> bool:
        consumer = self._consumer
        for tp in self._assignment:
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is None:  # no fetch answered for it yet: its backlog is unknown
                return False
            if await consumer.position(tp) < end:
                return False
        return True

    # -- commit --------------------------------------------------------------------------------
    async def _commit(self, work: dict[int, TaskBatch]) -> None:
        if self._eos:
            outcomes = await asyncio.gather(
                *(self._transaction(self.tasks[p], b) for p, b in work.items()),
                return_exceptions=True,
            )
            failed = False
            for (p, b), outcome in zip(work.items(), outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed = True
                    await self._drop_task(p, outcome)
                else:
                    self._delivered(self.tasks[p], b)
            if failed:
                await asyncio.sleep(0.5)  # a broker that is away: do not spin
            return
        try:
            await asyncio.wait_for(self._at_least_once(work), self._s.transaction_timeout_s)
        except Exception as err:
            for p in work:
                await self._drop_task(p, err)
            await asyncio.sleep(0.5)
            return
        for p, b in work.items():
            self._delivered(self.tasks[p], b)

    async def _transaction(self, task: DecideTask, b: TaskBatch) -> None:
        producer = task.producer
        assert producer is not None and task.publisher is not None
        publisher = task.publisher

        began = time.monotonic()

        async def txn() -> None:
            async with producer.transaction():
                if b.records:
                    await publisher.publish(b.records)
                if b.offsets:
                    await producer.send_offsets_to_transaction(b.offsets, self._s.decide_group)

        await asyncio.wait_for(txn(), self._s.transaction_timeout_s)
        took = time.monotonic() - began
        if took > 5:
            log.warning("task %d: a transaction took %.1fs 事务耗时过长", task.partition, took)

    async def _at_least_once(self, work: dict[int, TaskBatch]) -> None:
        assert self._shared_publisher is not None
        records = [r for b in work.values() for r in b.records]
        if records:
            await self._shared_publisher.publish(records)
            await self._shared_producer.flush()
        offsets = {tp: o for b in work.values() for tp, o in b.offsets.items()}
        await self._commit_offsets({tp: o for tp, o in offsets.items() if tp in self._assignment})

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """at_least_once, after the flush: the consumer commit of the batch's input offsets."""
        if offsets:
            await self._consumer.commit(offsets)

    def _delivered(self, task: DecideTask, b: TaskBatch) -> None:
        task.committed_batches += 1
        for result in b.results:
            self.decided += sum(1 for topic, _, _ in _tuples(result) if topic == self._decisions)
            if self._on_output is not None:
                self._on_output(task.partition, result)

    @property
    def _decisions(self) -> str:
        return self._s.topics.gate_decisions

    def on_reference_update(self, kind: str, key: str, record: Mapping[str, Any] | None) -> None:
        # idle engines too: one that becomes a task again must not decide on stale rules
        for task in [*self.tasks.values(), *self._idle.values()]:
            if task.engine is not None:
                task.engine.on_reference_update(kind, key, record)


def _tuples(result: BatchResult) -> list[tuple[str, bytes | None, bytes]]:
    return result.produce


async def _wait_for_producer_id(producer: Any) -> None:
    """Block until the transactional producer has its producer id: the InitProducerId request
    is what fences a previous owner of the transactional id (and aborts its open transaction)."""
    manager = getattr(producer, "_txn_manager", None)
    if manager is not None:
        await asyncio.shield(manager.wait_for_pid())
