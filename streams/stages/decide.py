"""The decide stage: device events in, gate decisions / alerts / dead letters out, rule state
in Kafka. No ClickHouse here: a database outage cannot slow a gate (docs/topology.md).

One consumer-group member (group ``<app_id>-decide``, librdkafka) reads the three device topics
and ``<app_id>-decide-reroute``. The range assignor gives a member partition *p* of every one of
these co-partitioned topics together; that set is **task p**, with its own ``RuleEngine`` whose
state changes go to changelog partition *p*. Events are keyed by ``community_id`` where they
enter, so task *p* validates and decides what arrives on partition *p* in one step; an event on
the wrong partition is forwarded to its owner once (``streams.stages.route``).

exactly_once (KIP-447, as Kafka Streams' EOS v2): **one** transactional producer per process.
One transaction per poll holds, for every task of the poll, the decisions, alerts, dead letters,
the decided events' copies for the sink (``<app_id>-decide-events``), forwarded events, the
changelog deltas and the input offsets (``send_offsets_to_transaction`` with the consumer's group
metadata, so a zombie of an older generation is refused by the group coordinator). The order of
a commit, written down once (``_commit``):

  1. produce every record of the poll;
  2. flush: every send is delivered or failed — any failure aborts (step 5);
  3. send the input offsets with the group metadata;
  4. commit the transaction;
  5. on any failure: abort, and rewind the poll's tasks to their committed state (engines
     rebuilt from the changelog, inputs seeked to the committed offsets). A fatal producer error
     (fenced, epoch lost) replaces the producer and rewinds every task.

Rebalance callbacks run inside ``consume()``, between transactions, so no transaction is open
when tasks move. A task set up on assignment first waits until no transaction is open on its
changelog partition (last stable offset = high watermark: the previous owner committed or was
aborted), restores to that end, and only then is its input read from the committed offsets
(librdkafka fetches them with ``require_stable``).

The client is blocking, so the stage runs in its own thread; reference-data updates from the
asyncio side are queued and applied between polls. at_least_once (Tansu: no transactions):
produce → flush → commit offsets; outputs are deterministic, so a redelivery makes the same
records again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fangxian.core.kafka_security import confluent_config
from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec
from streams.engine import Item
from streams.processor import BatchResult, DeadLetterBudget, EventProcessor
from streams.publish import OutRecord
from streams.stages.route import REDACT, Entry, Msg, Router, provenance_headers
from streams.state.changelog import (
    StateChange,
    TaskState,
    changelog_entries,
    restore_with_librdkafka,
)

log = logging.getLogger(__name__)

ClientFactory = Callable[[dict[str, Any]], Any]
#: (partition, owns) -> the task's engine; ``owns(community_id)`` is the timer filter
EngineFactory = Callable[[int, Callable[[str], bool]], Any]
#: group heartbeat: a leaver's partitions move at the others' next one
HEARTBEAT_MS = 500
#: CONCURRENT_TRANSACTIONS (the last transaction's markers still being written) is retried
#: after this; librdkafka's 100 ms default would be most of a decision's latency
RETRY_BACKOFF_MS = 5
#: a record larger than this is never produced: the broker's default max.message.bytes is 1 MiB
MAX_RECORD_BYTES = 900 * 1024
OFFSET_BEGINNING = -2

TP = tuple[str, int]


def changelog_records(
    topic: str, partition: int, changes: list[StateChange], parts: dict[bytes, int]
) -> list[OutRecord]:
    """Task *p*'s state changes as records of changelog partition *p* (tombstone = deleted; a
    large value in parts: ``streams.state.changelog.changelog_entries``)."""
    return [
        OutRecord(topic, key, raw, partition=partition)
        for key, raw in changelog_entries(changes, parts)
    ]


class StageError(RuntimeError):
    """The decide stage cannot run with this cluster (a clear message for the operator)."""


class TransactionFailed(RuntimeError):
    """A decide transaction was aborted; ``cause`` names why (the metric's label)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause


@dataclass
class DecideTask:
    """Everything the stage holds for partition *p* of its inputs."""

    partition: int
    engine: Any
    processor: EventProcessor
    changelog_position: int = 0  # changelog offset up to which the engine's state is restored
    ready: bool = False
    last_tick: float = 0.0
    committed_batches: int = 0
    restored_records: int = 0
    restore_seconds: float = 0.0
    #: changelog record key -> how many parts its value was last written in
    changelog_parts: dict[bytes, int] = field(default_factory=dict)

    @property
    def state(self) -> TaskState | None:
        return self.engine if hasattr(self.engine, "take_changes") else None


@dataclass
class TaskBatch:
    """What one poll brought for one task, and what it makes."""

    source: list[Msg] = field(default_factory=list)
    rerouted: list[Msg] = field(default_factory=list)
    offsets: dict[TP, int] = field(default_factory=dict)
    #: the first offset of each input partition in this batch: where a failed transaction
    #: rewinds to (everything before it was committed by an earlier transaction)
    starts: dict[TP, int] = field(default_factory=dict)
    records: list[OutRecord | tuple[str, bytes | None, bytes]] = field(default_factory=list)
    results: list[BatchResult] = field(default_factory=list)


def _close_quietly(producer: Any) -> None:
    try:
        close = getattr(producer, "close", None)
        if close is not None:
            close()
    except Exception as err:
        log.debug("old producer close: %r", err)


def _default_consumer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Consumer

    return Consumer(config)


def _default_producer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(config)


_STAGES_IN_PROCESS = itertools.count()


def instance_id(settings: Settings) -> str:
    """The stage's part of its transactional id: ``decide_instance_id`` if set, else host, pid
    and the stage's number in the process (the tests and the bench run several stages in one
    process; sharing a transactional id, they fenced each other)."""
    if settings.decide_instance_id:
        return settings.decide_instance_id
    n = next(_STAGES_IN_PROCESS)
    return f"{socket.gethostname()}-{os.getpid()}" + (f"-{n}" if n else "")


class DecideStage:
    """One member of the decide group; ``start()``, ``run()``, ``stop()`` (asyncio), the work
    in one thread of its own."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        metrics: Metrics,
        engine_factory: EngineFactory,
        residents: Mapping[str, Any] | None = None,
        *,
        consumer_factory: ClientFactory = _default_consumer,
        producer_factory: ClientFactory = _default_producer,
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
        self._reroute_topic = settings.decide_reroute_topic
        self._events_topic = settings.decide_events_topic
        self._changelog_topic = settings.decide_changelog_topic
        self._inputs = [*self._record_of, self._reroute_topic]
        self._partitions = settings.event_partitions
        self._router: Router | None = None
        self._budget = DeadLetterBudget(settings.dlq_max_ratio, settings.dlq_min_sample)
        self.tasks: dict[int, DecideTask] = {}
        self._idle: dict[int, DecideTask] = {}  # engines of tasks another member owns now
        self._assignment: set[TP] = set()
        self._stop = threading.Event()
        self._thread_done = threading.Event()
        self._thread_done.set()
        self._updates: collections.deque[tuple[str, str, Mapping[str, Any] | None]] = (
            collections.deque()
        )
        self._consumer: Any = None
        self._restorer: Any = None  # read_committed, no group: changelog restore, LSO
        self._watermarks: Any = None  # read_uncommitted, no group: high watermarks
        self._producer: Any = None
        self._delivery_errors: list[str] = []
        self._callback_error: BaseException | None = None
        self._rewind_all = False
        self._beat = time.monotonic()  # the loop's last round (the watchdog reads it)
        self._stage_thread: int | None = None
        self.instance = instance_id(settings)
        self.decided = 0  # decisions committed (tests and the benchmark read it)
        self.routed = 0  # events forwarded to the partition of their community
        self.ticks = 0
        self.aborted = 0

    # -- clients -------------------------------------------------------------------------------
    def _base(self) -> dict[str, Any]:
        return {**confluent_config(self._s), "client.id": f"{self._s.app_id}-decide"}

    def _producer_config(self) -> dict[str, Any]:
        config = {
            **self._base(),
            "acks": "all",
            "enable.idempotence": self._eos or self._s.producer_idempotence,
            "linger.ms": 1,
            "batch.size": 512 * 1024,
            "message.max.bytes": MAX_RECORD_BYTES + 64 * 1024,
            # the Java client's partitioner: keys land where every other producer puts them
            "partitioner": "murmur2_random",
            "retry.backoff.ms": RETRY_BACKOFF_MS,
            "retry.backoff.max.ms": 250,
            "error_cb": self._client_error,
        }
        if self._eos:
            timeout_ms = int(self._s.decide_transaction_timeout_s * 1000)
            config.update(
                {
                    "transactional.id": self._s.transactional_id(self.instance),
                    "transaction.timeout.ms": timeout_ms,
                    "message.timeout.ms": timeout_ms,
                }
            )
        return config

    def _new_producer(self) -> Any:
        producer = self._producer_factory(self._producer_config())
        if self._eos:
            # fences an earlier process with the same transactional id (a restarted replica
            # with a stable decide_instance_id) and aborts its open transaction
            self._retrying("init transactions", lambda: producer.init_transactions(30))
        return producer

    def _client_error(self, err: Any) -> None:
        # librdkafka's own errors (a broker gone, all brokers down): it retries by itself
        log.warning("Kafka client error 客户端错误: %s", err)

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        consumer = self._consumer_factory(
            {
                **self._base(),
                "group.id": self._s.decide_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "range",
                # a member that leaves hands its partitions over at the others' next heartbeat
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "session.timeout.ms": int(self._s.decide_session_timeout_s * 1000),
                "fetch.wait.max.ms": max(1, int(self._s.batch_within_s * 1000)),
                "error_cb": self._client_error,
            }
        )
        self._consumer = consumer
        counts = self._partition_counts(consumer)
        if len(set(counts.values())) != 1 or 0 in counts.values():
            consumer.close()
            raise StageError(
                "the decide stage needs the same partition count on every input and on the "
                f"changelog (task p reads partition p of each); found {counts} — create the "
                "topics with `fangxian topics create` (决策阶段的主题分区数不一致)"
            )
        self._partitions = next(iter(counts.values()))
        self._router = Router(self._codec, self._record_of, self._reroute_topic, self._partitions)
        group = f"{self._s.decide_group}-restore"
        self._restorer = self._consumer_factory(
            {
                **self._base(),
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 20,
            }
        )
        self._watermarks = self._consumer_factory(
            {**self._base(), "group.id": group, "isolation.level": "read_uncommitted"}
        )
        self._producer = self._new_producer()
        if self._restore_state and self._s.decide_warm_start:
            # every task's state restored into an idle engine before the member joins its
            # group: on assignment a task then reads only the changelog written since
            idle = [self._new_task(p) for p in range(self._partitions)]
            self._restore(idle)
            self._idle.update((task.partition, task) for task in idle)
        consumer.subscribe(
            self._inputs,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _partition_counts(self, consumer: Any) -> dict[str, int]:
        meta = self._retrying("metadata", lambda: consumer.list_topics(timeout=10))
        return {
            topic: len(meta.topics[topic].partitions) if topic in meta.topics else 0
            for topic in [*self._inputs, self._changelog_topic]
        }

    async def run(self) -> None:
        """The loop in a thread of its own (not the event loop's executor: several stages in one
        process, as the tests and the bench run them, would take its few workers for good)."""
        self._thread_done.clear()
        self._beat = time.monotonic()
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def settle(err: BaseException | None) -> None:
            if ended.done():
                return
            if err is None:
                ended.set_result(None)
            else:
                ended.set_exception(err)

        def target() -> None:
            err: BaseException | None = None
            try:
                self._run()
            except BaseException as exc:  # handed to the awaiting task
                err = exc
            finally:
                self._thread_done.set()
                with contextlib.suppress(RuntimeError):  # the event loop is already closed
                    loop.call_soon_threadsafe(settle, err)

        watchdog = threading.Thread(target=self._watchdog, name="decide-watchdog", daemon=True)
        threading.Thread(target=target, name="decide-loop", daemon=True).start()
        watchdog.start()
        await ended

    def _watchdog(self) -> None:
        """A loop that has not come round for a while says where it is (once per episode): a
        stall must be diagnosable from the log, not only from a debugger."""
        stuck_after = 4 * self._s.decide_transaction_timeout_s + 10
        reported = False
        while not self._thread_done.wait(5.0):
            if self._stage_thread is None:
                continue
            idle = time.monotonic() - self._beat
            if idle < stuck_after:
                reported = False
                continue
            if reported:
                continue
            reported = True
            frame = sys._current_frames().get(self._stage_thread)
            where = "".join(traceback.format_stack(frame)) if frame is not None else "?"
            log.error(
                "decide loop has not come round for %.0fs 决策循环停滞; it is at:\n%s", idle, where
            )

    async def stop(self) -> None:
        self._stop.set()
        # the loop finishes what it is in (a commit, a restore: each bounded) before the
        # clients close: closing them under it crashed librdkafka's flush (SystemError)
        done = await asyncio.to_thread(
            self._thread_done.wait, 4 * self._s.decide_transaction_timeout_s + 10
        )
        if not done:
            log.error("decide loop did not stop in time 决策循环未及时停止; closing anyway")
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        try:
            if self._consumer is not None:
                self._consumer.close()  # leaves the group (its on_revoke runs in here)
        except Exception as err:  # a broker that is away: the session timeout moves the tasks
            log.warning("decide consumer close: %r", err)
        if self._producer is not None:
            self._producer.flush(5)
        for client in (self._restorer, self._watermarks):
            if client is not None:
                try:
                    client.close()
                except Exception as err:
                    log.debug("close: %r", err)
        self._consumer = self._producer = self._restorer = self._watermarks = None

    def _retrying(self, what: str, call: Callable[[], Any], *, attempts: int = 0) -> Any:
        """``call()`` until it succeeds (a broker away for a while), or the stage stops."""
        from confluent_kafka import KafkaException

        backoff = 0.2
        n = 0
        while True:
            try:
                return call()
            except KafkaException as exc:
                err = exc.args[0]
                n += 1
                if getattr(err, "fatal", lambda: False)() or (attempts and n >= attempts):
                    raise
                if self._stop.is_set():
                    raise
                log.warning("%s failed, retrying in %.1fs (重试): %s", what, backoff, err)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # -- tasks ---------------------------------------------------------------------------------
    def owns_for(self, p: int) -> Callable[[str], bool]:
        assert self._router is not None
        return self._router.owns(p)

    def _new_task(self, p: int) -> DecideTask:
        engine = self._engine_factory(p, self.owns_for(p))
        return DecideTask(p, engine, EventProcessor(self._s, self._codec, engine, self._metrics))

    def _changelog_ends(self, partitions: Sequence[int]) -> dict[int, int]:
        """Each changelog partition's end once no transaction is open on it (last stable offset
        = high watermark): whatever the previous owner wrote is then committed or aborted. One
        deadline for all of them (3 × the transaction timeout: a crashed owner's transaction
        is ended by the broker by then), not one each: the wait runs inside the rebalance
        callback, and three partitions waited for in turn held the group for 90 s."""
        from confluent_kafka import TopicPartition as CTP

        limit = 3 * self._s.decide_transaction_timeout_s
        deadline = time.monotonic() + limit
        ends: dict[int, int] = {}
        todo = list(partitions)
        self._refresh_changelog_metadata()
        while todo:
            for p in list(todo):
                tp = CTP(self._changelog_topic, p)
                _, stable = self._retrying("changelog end", partial(self._stable_end, tp))
                _, high = self._retrying("changelog end", partial(self._high_end, tp))
                ends[p] = int(stable)
                if stable >= high:
                    todo.remove(p)
            if todo and time.monotonic() > deadline:
                log.warning(
                    "changelog %s: a transaction is still open after %.0fs, restoring to its "
                    "last stable offset 仍有未完成事务",
                    todo,
                    limit,
                )
                break
            if todo:
                time.sleep(0.01)
        return ends

    def _stable_end(self, tp: Any) -> tuple[int, int]:
        return self._watermark(self._restorer, tp)

    def _high_end(self, tp: Any) -> tuple[int, int]:
        return self._watermark(self._watermarks, tp)

    def _refresh_changelog_metadata(self) -> None:
        """Fresh metadata of the changelog for the two clients that only query it: a rewind
        often follows a broker's death, and their cached leaders may be that broker (each
        first query then waited its whole timeout)."""
        from confluent_kafka import KafkaException

        for client in (self._restorer, self._watermarks):
            try:
                client.list_topics(self._changelog_topic, timeout=2)
            except KafkaException as err:
                log.debug("metadata refresh for %s: %r", self._changelog_topic, err)

    @staticmethod
    def _watermark(client: Any, tp: Any) -> tuple[int, int]:
        """``tp``'s watermarks from its leader. A client that only queries (no assignment) never
        refreshes its metadata by itself: after the leader's broker died (kill -9 of one node of
        a cluster) every query went to the dead broker and timed out until the stage gave up.
        A failed query asks any live broker for the topic's metadata, so the next try goes to
        the new leader."""
        from confluent_kafka import KafkaException

        try:
            result: tuple[int, int] = client.get_watermark_offsets(tp, 10, False)
            return result
        except KafkaException:
            try:
                client.list_topics(tp.topic, timeout=2)
            except KafkaException as err:
                log.debug("metadata refresh for %s: %r", tp.topic, err)
            raise

    def _restore(self, tasks: Sequence[DecideTask]) -> None:
        targets: dict[TP, tuple[int, int, Callable[[str, str, bytes | None], None]]] = {}
        ends = self._changelog_ends([t.partition for t in tasks if t.state is not None])
        for t in tasks:
            if t.state is not None:
                end = ends[t.partition]
                targets[(self._changelog_topic, t.partition)] = (
                    t.changelog_position,
                    end,
                    t.state.restore,
                )
        parts = {(self._changelog_topic, t.partition): t.changelog_parts for t in tasks}
        done = restore_with_librdkafka(self._restorer, targets, parts=parts)
        for (_, p), result in done.items():
            task = next(t for t in tasks if t.partition == p)
            task.changelog_position = result.end_offset
            task.restored_records += result.records
            task.restore_seconds += result.seconds
            if result.records:
                log.info(
                    "task %d state restored 状态已恢复: %d changelog records in %.2fs",
                    p,
                    result.records,
                    result.seconds,
                )

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            self._assign([(tp.topic, tp.partition) for tp in partitions])
        except BaseException as err:  # raised again by the loop, outside librdkafka
            self._callback_error = err

    def _assign(self, assigned: list[TP]) -> None:
        began = time.monotonic()
        mine = sorted({p for _, p in assigned})
        log.info("decide partitions assigned 决策分区分配: %s", mine)
        self._apply_updates()
        tasks = [self.tasks.get(p) or self._idle.pop(p, None) or self._new_task(p) for p in mine]
        if self._restore_state:
            self._restore(tasks)
        for task in tasks:
            task.ready = True
            self.tasks[task.partition] = task
        self._assignment = set(assigned)
        log.info("tasks %s ready 任务就绪 in %.2fs", mine, time.monotonic() - began)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """No transaction is open (callbacks run inside ``consume()``): the tasks become idle,
        their engines kept at their committed state in case they come back."""
        try:
            self._assignment = set()
            ends: dict[int, int] = {}
            from confluent_kafka import TopicPartition as CTP

            for p in self.tasks:
                try:
                    ends[p] = self._watermarks.get_watermark_offsets(
                        CTP(self._changelog_topic, p), 5, False
                    )[1]
                except Exception:  # unknown: this engine restores from nothing next time
                    ends[p] = -1
            for p, task in self.tasks.items():
                task.ready = False
                if ends[p] >= 0:
                    task.changelog_position = max(task.changelog_position, ends[p])
                    self._idle[p] = task
            self.tasks = {}
        except BaseException as err:
            self._callback_error = err

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        self._stage_thread = threading.get_ident()
        consumer = self._consumer
        timeout = self._s.batch_within_s
        batch_max = self._s.batch_max
        while not self._stop.is_set():
            self._beat = time.monotonic()
            self._apply_updates()
            messages = consumer.consume(batch_max, timeout)
            if self._callback_error is not None:
                err, self._callback_error = self._callback_error, None
                raise err
            if self._rewind_all:
                self._rewind(list(self.tasks))
                continue
            work = self._split(messages)
            self._add_ticks(work)
            if work:
                self._commit(work)

    def _split(self, messages: Sequence[Any]) -> dict[int, TaskBatch]:
        work: dict[int, TaskBatch] = {}
        reroute = self._reroute_topic
        assignment = self._assignment
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise StageError(f"decide consumer: {err}")
                log.warning("decide consumer: %s", err)
                continue
            topic, p = m.topic(), m.partition()
            task = self.tasks.get(p)
            if task is None or not task.ready or (topic, p) not in assignment:
                continue
            b = work.get(p)
            if b is None:
                b = work[p] = TaskBatch()
            offset = m.offset()
            msg = Msg(topic, p, offset, m.key(), m.value(), m.timestamp()[1], m.headers())
            (b.rerouted if topic == reroute else b.source).append(msg)
            b.starts.setdefault((topic, p), offset)
            b.offsets[(topic, p)] = offset + 1
        for p, b in work.items():
            self._make(self.tasks[p], b)
        return work

    def _make(self, task: DecideTask, b: TaskBatch) -> None:
        """The pure part of a task's batch: enter, decide, copy, collect the changelog."""
        router = self._router
        assert router is not None
        entry = router.enter(b.source, task.partition) if b.source else Entry()
        if b.rerouted:
            router.rerouted(b.rerouted, entry)
        if b.source:
            self._budget.record(len(b.source), len(entry.dead))
        if entry.forward:
            b.records.extend(entry.forward)
            self.routed += len(entry.forward)
            for r in entry.forward:
                self._metrics.decide_rerouted.labels(topic=r.headers[0][1].decode()).inc()
        if entry.dead:
            letters = task.processor.dead_letter_result(entry.dead)
            b.records.extend(letters.produce)
            b.results.append(letters)
        if entry.mine:
            processor = task.processor
            decoded: dict[str, list[dict[str, Any]]] = {t: [] for t in processor.record_of}
            kind_of = processor.kind_of
            items: list[Item] = []
            for msg, _, event in entry.mine:
                decoded[msg.topic].append(event)
                items.append((kind_of[msg.topic], event, msg.timestamp))
            result = processor.process_decoded(decoded, items, len(entry.mine))
            b.records.extend(result.produce)
            b.results.append(result)
            b.records.extend(self._copies(task.partition, entry, result.redacted))
            oldest_ms = min(msg.timestamp for msg, _, _ in entry.mine)
            self._metrics.decision_lag_seconds.observe(max(0.0, time.time() - oldest_ms / 1000))
        self._add_changes(task, b)

    def _copies(self, p: int, entry: Entry, redacted: set[str]) -> list[OutRecord]:
        """Each decided event once on ``<app_id>-decide-events``, for the sink."""
        topic = self._events_topic
        out = []
        for msg, _, event in entry.mine:
            headers = provenance_headers(msg)
            if redacted and event["event_id"] in redacted:
                headers += ((REDACT, b"1"),)
            out.append(
                OutRecord(
                    topic,
                    event["community_id"].encode(),
                    msg.value,
                    partition=p,
                    headers=headers,
                    timestamp_ms=msg.timestamp if msg.timestamp >= 0 else None,
                )
            )
        return out

    def _add_changes(self, task: DecideTask, b: TaskBatch) -> None:
        state = task.state
        if state is not None:
            b.records.extend(
                changelog_records(
                    self._changelog_topic,
                    task.partition,
                    state.take_changes(),
                    task.changelog_parts,
                )
            )

    def _add_ticks(self, work: dict[int, TaskBatch]) -> None:
        """Timers run against the wall clock once per second per task, and only when there is
        no backlog: while catching up, a recheck or a report still queued is not "missed"."""
        now = time.monotonic()
        due = [t for t in self.tasks.values() if t.ready and t.engine and now - t.last_tick >= 1.0]
        if not due or not self._caught_up():
            return
        now_ms = self._clock_ms()
        alerts = self._s.topics.alerts
        for task in due:
            task.last_tick = now
            self.ticks += 1
            result = task.processor.tick(now_ms)
            owns = self.owns_for(task.partition)
            # a timer of a community this task does not own is another task's
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

    def _caught_up(self) -> bool:
        from confluent_kafka import TopicPartition as CTP

        consumer = self._consumer
        tps = [CTP(t, p) for t, p in self._assignment]
        if not tps:
            return True
        try:
            positions = consumer.position(tps)
        except Exception:
            return False
        for tp in positions:
            _, end = consumer.get_watermark_offsets(tp, cached=True)
            if end is None or end < 0 or tp.offset < 0:
                # nothing fetched for it yet: an empty partition is caught up, others unknown
                if end != 0:
                    return False
                continue
            if tp.offset < end:
                return False
        return True

    # -- commit --------------------------------------------------------------------------------
    def _commit(self, work: dict[int, TaskBatch]) -> None:
        """The commit order of the module doc, steps 1–5."""
        from confluent_kafka import KafkaException

        began = time.monotonic()
        producer = self._producer
        try:
            if self._eos:
                producer.begin_transaction()
            self._delivery_errors = []
            for b in work.values():
                self._produce(b.records)  # 1
            remaining = producer.flush(self._s.transaction_timeout_s)  # 2
            if remaining:
                raise TransactionFailed("timeout", f"{remaining} records not delivered in time")
            if self._delivery_errors:
                raise TransactionFailed("delivery", self._delivery_errors[0])
            offsets = {tp: o for b in work.values() for tp, o in b.offsets.items()}
            if self._eos:
                if offsets:
                    self._send_offsets(producer, offsets)  # 3
                self._end_transaction(producer)  # 4
            elif offsets:
                self._commit_offsets(offsets)
        except (KafkaException, TransactionFailed, BufferError) as exc:
            self._failed(work, exc)  # 5
            return
        except SystemError as exc:  # confluent-kafka's C code on a fenced producer: unknown
            self._failed(work, TransactionFailed("commit_unknown", repr(exc)))
            return
        self._metrics.decide_commit_seconds.observe(time.monotonic() - began)
        for p, b in work.items():
            task = self.tasks.get(p)
            if task is not None:
                self._delivered(task, b)

    def _send_offsets(self, producer: Any, offsets: Mapping[Any, int]) -> None:
        """``send_offsets_to_transaction``, given up on after the broker's own transaction
        timeout (the transaction is aborted by then anyway). librdkafka 2.16 ignores the call's
        timeout while the group coordinator is away (librdkafka#5456) and, once a killed
        broker has left the metadata, may never look for the new one (#5511): with one node of
        a cluster ``kill -9``'d the stage stayed in this call for minutes and decided nothing.
        The call runs in a thread of its own; when it does not return in time the transaction
        fails (``timeout``) and the stage goes on as after any failed transaction — a new
        producer fences the stuck one, the tasks rewind, the new producer finds the new
        coordinator."""
        args = (
            self._offset_list(offsets),
            self._consumer.consumer_group_metadata(),
            self._s.transaction_timeout_s,
        )
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                producer.send_offsets_to_transaction(*args)
                outcome.append(None)
            except BaseException as exc:  # handed to the stage's thread below
                outcome.append(exc)

        # a daemon thread (not an executor's): one blocked in librdkafka must not hold up the
        # process's exit; a thread start costs far less than the transaction around it
        caller = threading.Thread(target=call, name="decide-send-offsets", daemon=True)
        caller.start()
        caller.join(self._s.decide_transaction_timeout_s)
        if not outcome:
            raise TransactionFailed(
                "timeout",
                f"send_offsets_to_transaction did not return in "
                f"{self._s.decide_transaction_timeout_s:.0f}s (group coordinator away)",
            )
        if outcome[0] is not None:
            raise outcome[0]

    def _end_transaction(self, producer: Any) -> None:
        """``commit_transaction``, again while librdkafka says the error is retriable and the
        transaction need not be aborted (a commit that timed out may have completed: aborting
        it then would decide its events twice). Fails with ``commit_unknown`` when the outcome
        cannot be known; the tasks then rewind to the offsets the group has committed."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + 3 * self._s.decide_transaction_timeout_s
        while True:
            try:
                producer.commit_transaction(self._s.transaction_timeout_s)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.txn_requires_abort():
                    raise  # nothing of it was committed
                if err.retriable() and time.monotonic() < deadline and not self._stop.is_set():
                    log.warning("commit transaction: %s; again 重试提交", err)
                    continue
                raise TransactionFailed("commit_unknown", str(err)) from exc

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        """at_least_once, after the flush: the consumer commit of the poll's input offsets."""
        self._consumer.commit(offsets=self._offset_list(offsets), asynchronous=False)

    def _offset_list(self, offsets: Mapping[TP, int]) -> list[Any]:
        from confluent_kafka import TopicPartition as CTP

        return [CTP(t, p, o) for (t, p), o in offsets.items()]

    def _produce(self, records: Sequence[OutRecord | tuple[str, bytes | None, bytes]]) -> None:
        producer = self._producer
        # a callback per message: the producer-wide one in the config made flush() fail with
        # SystemError when several stages shared a process (the fault matrix's scaling test)
        on_delivery = self._on_delivery
        for r in records:
            if isinstance(r, OutRecord):
                topic, key, value = r.topic, r.key, r.value
                kwargs: dict[str, Any] = {}
                if r.partition is not None:
                    kwargs["partition"] = r.partition
                if r.headers:
                    kwargs["headers"] = list(r.headers)
                if r.timestamp_ms is not None:
                    kwargs["timestamp"] = r.timestamp_ms
            else:
                topic, key, value = r
                kwargs = {}
            if value is not None and len(value) > MAX_RECORD_BYTES:
                raise TransactionFailed(
                    "record_too_large",
                    f"a {len(value)}-byte record for {topic} (limit {MAX_RECORD_BYTES})",
                )
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=on_delivery, **kwargs)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.05)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None and len(self._delivery_errors) < 10:
            self._delivery_errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def _failed(self, work: dict[int, TaskBatch], exc: BaseException) -> None:
        """Step 5: abort, count, rewind. Nothing of the poll was committed."""
        from confluent_kafka import KafkaException

        err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        fatal = bool(err is not None and err.fatal())
        cause = (
            exc.cause
            if isinstance(exc, TransactionFailed)
            else ("fatal" if fatal else str(getattr(err, "name", lambda: "kafka")()).lower())
        )
        self.aborted += 1
        self._metrics.decide_txn_failures.labels(cause=cause).inc()
        log.error(
            "decide transaction aborted 决策事务已中止 (%s), tasks %s rewind to their committed "
            "state: %s",
            cause,
            sorted(work),
            exc,
        )
        if self._eos:
            # Always a new producer (same transactional id): its InitProducerId fences this one
            # and has the coordinator abort the open transaction. Reusing the producer after an
            # abort left sequence gaps (messages timed out while the broker was away) that
            # failed the next transaction with OUT_OF_ORDER_SEQUENCE_NUMBER, and its epoch bump
            # then blocked send_offsets_to_transaction past its timeout (the broker-restart
            # fault test). A failure is rare; a new producer costs one InitProducerId.
            self._replace_producer()
            unknown = fatal or (
                isinstance(exc, TransactionFailed) and exc.cause == "commit_unknown"
            )
            if unknown:  # the commit may have happened: ask the group what it holds
                self._rewind(list(self.tasks))
            else:
                self._rewind(sorted(work), starts=self._starts(work))
            return
        self._producer.purge()
        self._rewind(sorted(work), starts=self._starts(work))

    @staticmethod
    def _starts(work: dict[int, TaskBatch]) -> dict[TP, int]:
        return {tp: o for b in work.values() for tp, o in b.starts.items()}

    def _replace_producer(self) -> None:
        old, self._producer = self._producer, None
        try:
            old.purge()  # nothing of the failed transaction is sent any more
        except Exception as err:
            log.debug("purge: %r", err)
        # closed in the background: destroying a producer whose broker just went away can take
        # seconds, and the new one's InitProducerId fences it anyway
        threading.Thread(target=_close_quietly, args=(old,), name="decide-old-producer").start()
        self._producer = self._new_producer()

    def _rewind(self, partitions: Sequence[int], starts: Mapping[TP, int] | None = None) -> None:
        """Tasks back to their committed state: engines rebuilt from the changelog (restored
        from the start: the engine held the aborted changes), inputs seeked to ``starts`` (the
        failed batch's first offsets: all before them is committed) or, when the outcome of the
        last commit is unknown, to the group's committed offsets (fetched with require_stable).
        Asking the group is bounded: after a broker restart librdkafka's OffsetFetch can wait
        for a rebalance that only ``consume()`` serves; the stage then stops and its supervisor
        starts it again from the committed offsets."""
        from confluent_kafka import TopicPartition as CTP

        self._rewind_all = False
        tasks = []
        for p in partitions:
            old = self.tasks.get(p)
            if old is None:
                continue
            task = self._new_task(p)
            task.ready = False
            self.tasks[p] = task
            tasks.append(task)
        if not tasks:
            return
        if self._restore_state:
            self._restore(tasks)
        if starts is not None:
            mine = {t.partition for t in tasks}
            for (topic, p), offset in starts.items():
                if p in mine and (topic, p) in self._assignment:
                    self._seek(CTP(topic, p, offset))
            for task in tasks:
                task.ready = True
            return
        tps = [CTP(t, p) for t, p in self._assignment if p in {t.partition for t in tasks}]
        committed = self._retrying(
            "committed offsets", lambda: self._consumer.committed(tps, 30), attempts=4
        )
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            self._seek(tp)
        for task in tasks:
            task.ready = True

    def _seek(self, tp: Any) -> None:
        self._retrying("seek", lambda: self._consumer.seek(tp))

    def _delivered(self, task: DecideTask, b: TaskBatch) -> None:
        task.committed_batches += 1
        decisions = self._s.topics.gate_decisions
        for result in b.results:
            self.decided += sum(1 for topic, _, _ in result.produce if topic == decisions)
            if self._on_output is not None:
                self._on_output(task.partition, result)

    # -- reference data ------------------------------------------------------------------------
    def on_reference_update(self, kind: str, key: str, record: Mapping[str, Any] | None) -> None:
        """From the reference store (another thread): applied between polls."""
        self._updates.append((kind, key, record))

    def _apply_updates(self) -> None:
        updates = self._updates
        if not updates:
            return
        engines = [t.engine for t in (*self.tasks.values(), *self._idle.values()) if t.engine]
        while updates:
            kind, key, record = updates.popleft()
            # idle engines too: one that becomes a task again must not decide on stale rules
            for engine in engines:
                engine.on_reference_update(kind, key, record)
