"""The dispatcher stage: its own consumer group on ``alerts``, state rebuilt from its own
``alert.actions`` log, messages out through ``sinks.channels``, the acknowledge endpoint.

Order of the writes, so that no alert is lost and no message is sent twice:
  1. an alert is taken on with a ROUTED record; only after the broker has it (acks=all) are
     the ``alerts`` offsets committed — a crash before redelivers the alert, and a redelivered
     alert already ROUTED is skipped;
  2. before a message is handed to a channel, its SENDING record is in the broker;
  3. the outcome (NOTIFIED / DELIVERY_FAILED) is written after the channel answered.
On assignment the dispatcher replays its partitions of ``alert.actions`` (the record of an
alert goes to the partition number its alert came from), so open alerts, group windows,
escalation timers and deliveries are back. A delivery with SENDING and no outcome is *in
doubt*: the process died between 2 and 3. It is sent again — the one window in which a
channel without idempotency (SMS, the group robots) can deliver a message twice; the generic
webhook carries ``Idempotency-Key`` so its receiver can drop the repeat.

Silences are read like the roster: every instance reads all of ``alert.silences`` (compacted)
before it starts and follows it, so each one mutes the same alerts; inhibition rules come from
``Settings.dispatch_inhibit_file`` (``streams/dispatch/inhibition.py``).

``run_dispatcher(settings)`` runs it until SIGTERM/SIGINT (``fangxian dispatch``; the worker
starts it as one more child process).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import CollectorRegistry, start_http_server

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from sinks import Connection
from sinks.audit import AuditTrail
from sinks.channels.base import Channel
from sinks.channels.config import load_channels
from sinks.channels.delivery import RetryPolicy, Sender
from streams.dispatch.acklink import AckSigner
from streams.dispatch.ackweb import ack_app
from streams.dispatch.action_sink import ActionSink
from streams.dispatch.contacts import ContactBox
from streams.dispatch.inhibition import Inhibitor, load_rules
from streams.dispatch.machine import Delivery, DispatchMachine
from streams.dispatch.message import compose
from streams.dispatch.meter import DispatchMeter, first_message_latencies
from streams.dispatch.roster import Roster
from streams.dispatch.silences import SilenceBook

log = logging.getLogger(__name__)

#: a delivery that failed for a passing reason waits 30 s, 60 s, 120 s, ... (at most 5 min)
RETRY_BASE_MS = 30_000
RETRY_CAP_MS = 300_000

#: the open-alert and breaker gauges are set at most this often (Prometheus scrapes every 15 s)
GAUGES_EVERY_S = 1.0

#: how often audit rows spooled during a ClickHouse outage are replayed
AUDIT_DRAIN_S = 5.0

REFERENCE_RECORDS = {
    "staff": "StaffMember",
    "duty": "DutyShift",
    "escalation": "EscalationPolicy",
    "silences": "Silence",
}
#: silences over for a day and inhibition sources whose time is over leave memory this often
PRUNE_MUTING_EVERY_S = 60.0


def _wall_ms() -> int:
    return int(time.time() * 1000)


async def _behind(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    """Whether ``consumer`` has not yet reached ``end`` on one of its partitions."""
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return True
    return False


class _Assignment(ConsumerRebalanceListener):
    def __init__(self, stage: DispatcherStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stage.on_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._stage.restore(sorted(tp.partition for tp in assigned))


class DispatcherStage:
    def __init__(
        self,
        settings: Settings,
        channels: dict[str, Channel] | None = None,
        *,
        clock_ms: Callable[[], int] = _wall_ms,
        retry: RetryPolicy | None = None,
        idempotent_producer: bool = True,
        serve_metrics: bool = False,
        audit: AuditTrail | None = None,
    ) -> None:
        self._s = settings
        self._audit = audit  # every opened acknowledge link leaves an audit_log row
        self._idempotent = idempotent_producer  # False for brokers without it (Tansu)
        self._clock_ms = clock_ms
        self._codec = Codec()
        self._channels = (
            channels if channels is not None else load_channels(settings.dispatch_channels_file)
        )
        self._retry = retry
        # one registry per stage; ``serve_metrics`` serves it on dispatch_metrics_port
        self.registry = CollectorRegistry()
        self.metrics = Metrics.create(self.registry)
        self._serve_metrics = serve_metrics
        self._metrics_server: Any = None
        self._gauges_at = 0.0
        self.meter = DispatchMeter(self.metrics, self._kind_of, self._target_of)
        self.roster = Roster(ContactBox(settings.roster_key), settings.default_timezone)
        defaults = [c.strip() for c in settings.dispatch_default_channels.split(",") if c.strip()]
        self.silences = SilenceBook()
        self.inhibit_rules = load_rules(settings.dispatch_inhibit_file)
        # the subject digest of inhibition is keyed (by a key derived from the ack link key)
        self._inhibit_key = hashlib.sha256(
            b"fangxian inhibition subject key|" + settings.ack_link_key.encode()
        ).digest()
        self._pruned_at = 0.0
        self.machine = self._new_machine(defaults)
        self._signer = AckSigner(settings.ack_link_key, settings.ack_base_url)
        self._producer: AIOKafkaProducer | None = None
        self._alerts: AIOKafkaConsumer | None = None
        self._actions: AIOKafkaConsumer | None = None
        self._reference: AIOKafkaConsumer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sender: Sender | None = None
        self._web: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._owned: list[int] = []
        self.ready = asyncio.Event()  # set once the current assignment is restored
        # aiokafka runs the rebalance listener in its coordinator task, beside this loop: the
        # loop's steps and a restore never interleave (a restore must not see a delivery of
        # the old state half-done, nor the loop act on a state being rebuilt)
        self._lock = asyncio.Lock()
        self.restored_records = 0
        self.sent = 0
        self.failed = 0

    def _new_machine(self, default_channels: list[str] | tuple[str, ...]) -> DispatchMachine:
        return DispatchMachine(
            self.roster,
            default_channels,
            silences=self.silences,
            inhibitor=Inhibitor(self.inhibit_rules, self._inhibit_key),
        )

    def _target_of(self, target: str) -> str:
        """A bounded label for a delivery target: ``sms:<staff_id>`` → ``sms``."""
        if self._sender is not None:
            name = self._sender.channel_for(target)
            if name is not None:
                return name
        return target.split(":", 1)[0] if target.startswith("sms:") else target

    def _kind_of(self, target: str) -> str:
        channel = self._channels.get(self._target_of(target))
        return channel.kind if channel is not None else "unrouted"

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        s = self._s
        if self._serve_metrics:
            self._metrics_server, _ = start_http_server(
                s.dispatch_metrics_port, addr=s.bind_host, registry=self.registry
            )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            **kafka_client_kwargs(s, "aiokafka"),
            acks="all",
            enable_idempotence=self._idempotent,
            linger_ms=0,
        )
        await self._producer.start()
        self._session = aiohttp.ClientSession()
        self._sender = Sender(self._channels, self._session, retry=self._retry)
        await self._load_reference()
        self._actions = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            **kafka_client_kwargs(s, "aiokafka"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await self._actions.start()
        self._alerts = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            **kafka_client_kwargs(s, "aiokafka"),
            group_id=f"{s.app_id}-dispatch",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        self._alerts.subscribe([s.topics.alerts], listener=_Assignment(self))
        await self._alerts.start()
        self._web = web.AppRunner(
            ack_app(
                self._signer,
                self._publish_request,
                self._clock_ms,
                console_url=self._s.console_base_url,
                audit=self._audit,
            ),
            access_log=None,
        )
        await self._web.setup()
        await web.TCPSite(self._web, s.bind_host, s.ack_port).start()
        log.info(
            "dispatcher started 值班派单已启动: group %s-dispatch, ack endpoint %s:%d, "
            "metrics %s, channels %s",
            s.app_id,
            s.bind_host,
            s.ack_port,
            f"{s.bind_host}:{s.dispatch_metrics_port}" if self._serve_metrics else "not served",
            sorted(self._channels),
        )

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._web is not None:
            await self._web.cleanup()
        for consumer in (self._alerts, self._actions, self._reference):
            if consumer is not None:
                await consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._session is not None:
            await self._session.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()

    # -- reference data -------------------------------------------------------------------------
    async def _load_reference(self) -> None:
        topics = {getattr(self._s.topics, kind): kind for kind in REFERENCE_RECORDS}
        self._reference = AIOKafkaConsumer(
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._reference.start()
        partitions = []
        for topic in topics:
            for p in self._reference.partitions_for_topic(topic) or await self._partitions(topic):
                partitions.append(TopicPartition(topic, p))
        self._reference.assign(partitions)
        await self._reference.seek_to_beginning(*partitions)
        end = await self._reference.end_offsets(partitions)
        self._reference_kinds = topics
        while await _behind(self._reference, end):
            await self._poll_reference(timeout_ms=500)
        log.info(
            "roster loaded 值班名册: %d staff, %d shifts, %d policies (%d unreadable contacts); "
            "%d silences 静默, %d active; inhibition rules 抑制规则 %s",
            len(self.roster.staff),
            len(self.roster.shifts),
            len(self.roster.policies),
            self.roster.unreadable,
            len(self.silences),
            sum(1 for s in self.silences.silences.values() if s.active_at(self._clock_ms())),
            [r.name for r in self.inhibit_rules] or "none",
        )

    async def _partitions(self, topic: str) -> set[int]:
        assert self._producer is not None
        return set(await self._producer.partitions_for(topic))

    async def _poll_reference(self, timeout_ms: int = 0) -> None:
        assert self._reference is not None
        batches = await self._reference.getmany(timeout_ms=timeout_ms, max_records=5000)
        for tp, messages in batches.items():
            kind = self._reference_kinds[tp.topic]
            for msg in messages:
                key = msg.key.decode() if msg.key else ""
                record = None
                if msg.value is not None:
                    try:
                        record = self._codec.decode(REFERENCE_RECORDS[kind], msg.value)
                    except InvalidEvent as err:
                        log.error("skipping undecodable %s record %s: %s", kind, key, err)
                        continue
                apply = {
                    "staff": self.roster.apply_staff,
                    "duty": self.roster.apply_shift,
                    "escalation": self.roster.apply_policy,
                    "silences": self.silences.apply,
                }[kind]
                apply(key, record)
                self.machine.wake_all()

    # -- assignment -----------------------------------------------------------------------------
    async def on_revoked(self) -> None:
        async with self._lock:
            self.ready.clear()
            await self._drain()

    async def _drain(self) -> None:
        """Let the deliveries in flight finish (and record their outcome)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def restore(self, partitions: list[int]) -> None:
        """Replay ``alert.actions`` partitions ``partitions`` into a fresh state."""
        async with self._lock:
            self.ready.clear()
            await self._drain()
            await self._restore(partitions)
            self.ready.set()

    async def _restore(self, partitions: list[int]) -> None:
        assert self._actions is not None
        started = time.monotonic()
        self.machine = self._new_machine(self.machine.default_channels)
        self._owned = partitions
        topic = self._s.topics.alert_actions
        tps = [TopicPartition(topic, p) for p in partitions]
        self._actions.assign(tps)
        count = 0
        if tps:
            await self._actions.seek_to_beginning(*tps)
            end = await self._actions.end_offsets(tps)
            while await _behind(self._actions, end):
                batches = await self._actions.getmany(timeout_ms=500, max_records=10000)
                for messages in batches.values():
                    for msg in messages:
                        record = self._decode_action(msg.value)
                        if record is not None:
                            self.machine.apply(record, live=False)
                            count += 1
        settled = self.machine.settle()
        in_doubt = self.machine.release_in_doubt()
        for record in settled:
            await self._produce(record)
        self._hold_gauges(force=True)
        self.restored_records += count
        # a delivery in doubt may reach its staff twice: an operator should see that line
        log.log(
            logging.WARNING if in_doubt else logging.INFO,
            "dispatch state restored 状态已恢复: partitions %s, %d records, %d open alerts, "
            "%d in-doubt deliveries to resend, %.2f s",
            partitions,
            count,
            sum(1 for a in self.machine.alerts.values() if a.status == "OPEN"),
            in_doubt,
            time.monotonic() - started,
        )

    def _decode_action(self, value: bytes | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            return self._codec.decode("AlertAction", value)
        except InvalidEvent as err:
            log.error("skipping undecodable alert action: %s", err)
            return None

    # -- producing -------------------------------------------------------------------------------
    def _partition_of(self, record: dict[str, Any]) -> int:
        return int(record.get("detail", {}).get("partition", 0))

    async def _produce(self, record: dict[str, Any], partition: int | None = None) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self._s.topics.alert_actions,
            self._codec.encode("AlertAction", record),
            key=record["alert_id"].encode(),
            partition=self._partition_of(record) if partition is None else partition,
        )
        self.meter.count(record)  # counted once the broker has it

    def _hold_gauges(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGES_EVERY_S:
            return
        self._gauges_at = now
        # closed alerts leave memory before the walk (the walk and the memory stay bounded)
        self.machine.prune(self._clock_ms())
        breakers = (
            {name: b.is_open for name, b in self._sender.breakers.items()}
            if self._sender is not None
            else {}
        )
        self.meter.hold(self.machine.alerts.values(), self._clock_ms(), breakers)

    async def _publish_request(self, record: dict[str, Any], partition: int) -> None:
        await self._produce(record, partition)

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        assert self._alerts is not None
        while not self._stopping.is_set():
            async with self._lock:
                await self._poll_reference()
                await self._tail_actions()
                await self._take_alerts()
                self._start_due_deliveries()
                self._hold_gauges()
            await asyncio.sleep(0)  # let a waiting restore have the lock

    async def _tail_actions(self) -> None:
        if self._actions is None or not self._owned:
            return
        batches = await self._actions.getmany(timeout_ms=0, max_records=5000)
        for messages in batches.values():
            for msg in messages:
                record = self._decode_action(msg.value)
                if record is None:
                    continue
                for derived in self.machine.apply(record):
                    await self._produce(derived)

    async def _take_alerts(self) -> None:
        assert self._alerts is not None
        batches = await self._alerts.getmany(
            timeout_ms=int(self._s.dispatch_tick_s * 1000), max_records=2000
        )
        if not batches:
            return
        if not self.ready.is_set():
            # fetched for partitions whose restore has not run yet: read them again after it
            for tp, messages in batches.items():
                if messages:
                    self._alerts.seek(tp, messages[0].offset)
            return
        now = self._clock_ms()
        pending = []
        for tp, messages in batches.items():
            for msg in messages:
                try:
                    alert = self._codec.decode("Alert", msg.value)
                except InvalidEvent as err:
                    log.error("skipping undecodable alert at %s@%d: %s", tp, msg.offset, err)
                    continue
                for record in self.machine.on_alert(alert, tp.partition, now):
                    pending.append(self._producer_send(record))
        if pending:
            await asyncio.gather(*pending)
        # ROUTED is in the broker: the messages may start before the offsets are committed
        # (a crash in between redelivers alerts that are already ROUTED, and they are skipped)
        self._start_due_deliveries()
        try:
            await self._alerts.commit(
                {tp: messages[-1].offset + 1 for tp, messages in batches.items() if messages}
            )
        except (CommitFailedError, IllegalStateError) as err:
            # a rebalance took the partitions meanwhile: their new owner reads these alerts
            # again and finds them ROUTED in alert.actions
            log.warning("alerts offsets not committed (rebalance): %s", err)

    async def _producer_send(self, record: dict[str, Any]) -> None:
        await self._produce(record)

    async def _produce_all(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            await self._produce(record)

    def _start_due_deliveries(self) -> None:
        now = self._clock_ms()
        if time.monotonic() - self._pruned_at > PRUNE_MUTING_EVERY_S:
            self._pruned_at = time.monotonic()
            self.machine.prune_muting(now)
        muted = self.machine.mute_due(now)  # SILENCED, applied: nothing of theirs is due now
        if muted:
            task = asyncio.create_task(self._produce_all(muted))
            self._tasks.add(task)
            task.add_done_callback(self._delivery_done)
        for delivery in self.machine.due(now):
            records = self.machine.begin(delivery, now)  # marks it in flight at once
            task = asyncio.create_task(self._deliver(delivery, records))
            self._tasks.add(task)
            task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # e.g. Kafka unreachable for the whole produce timeout: the delivery stays in
            # flight, and a restart treats it as in doubt (sends it again)
            log.error("delivery task failed 发送任务失败: %r", task.exception())

    async def _deliver(self, delivery: Delivery, records: list[dict[str, Any]]) -> None:
        assert self._sender is not None
        for record in records:
            await self._produce(record)  # SENDING is in the broker before the send
        state = self.machine.alerts.get(delivery.alert_id)
        if state is None:
            return
        policy = self.roster.policy(state.community_id)
        message = compose(
            state,
            delivery,
            self._signer,
            now_ms=self._clock_ms(),
            ttl_s=policy.ack_link_ttl_s,
            timezone=policy.timezone,
        )
        outcome = await self._sender.deliver(delivery.channel, message)
        detail = {"tries": str(outcome.tries)}
        if not outcome.ok:
            detail.update(error=outcome.error[:300], code=outcome.code)
            self.failed += 1
            log.warning(
                "delivery failed 发送失败 %s via %s: %s",
                delivery.alert_id,
                delivery.channel,
                outcome.error,
            )
        else:
            self.sent += 1
            # before ``finish`` folds this NOTIFIED in: is it the group's first message?
            self.meter.first_message(
                first_message_latencies(state, self.machine.alerts, self._clock_ms())
            )
        if delivery.alert_id in self.machine.alerts:
            retry_after = (
                min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (delivery.attempt - 1))
                if outcome.retryable
                else None
            )
            record = self.machine.finish(
                delivery, outcome.ok, self._clock_ms(), detail, retry_after_ms=retry_after
            )
            await self._produce(record)


async def serve(
    settings: Settings,
    channels: dict[str, Channel] | None = None,
    *,
    with_action_sink: bool = True,
    idempotent_producer: bool = True,
) -> None:
    """Run the dispatcher (and, unless told not to, the ``alert.actions`` → ClickHouse loop)
    until SIGTERM/SIGINT."""
    from sinks import clickhouse_options, open_writer

    sink: ActionSink | None = None
    extra: list[asyncio.Task[None]] = []
    if with_action_sink:
        writer = open_writer(settings.clickhouse_url, **clickhouse_options(settings))
        sink = ActionSink(settings, writer)
        # dispatching needs only Kafka: the actions' ClickHouse writer waits for the server in
        # the background (a deploy during a ClickHouse outage still pages the staff)
        extra.append(asyncio.create_task(_run_action_sink(settings, sink, writer)))
        # the acknowledge endpoint's audit rows share it (chdb: one connection per process)
        audit = AuditTrail(
            lambda: writer, settings.audit_spool_dir, "acklink", owns_connection=False
        )
    else:
        audit = AuditTrail(
            lambda: open_writer(settings.clickhouse_url, **clickhouse_options(settings)),
            settings.audit_spool_dir,
            "acklink",
        )
    # through a ClickHouse outage acknowledgements go on: their audit rows wait in the spool
    extra.append(asyncio.create_task(_drain_audit(audit)))
    stage = DispatcherStage(
        settings,
        channels,
        idempotent_producer=idempotent_producer,
        serve_metrics=True,
        audit=audit,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stage.start()
    runner = asyncio.create_task(stage.run())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # a crash of the loop is a crash of the process
    finally:
        stopper.cancel()
        await stage.stop()
        if sink is not None:
            await sink.stop()
        for task in extra:
            task.cancel()
        with contextlib.suppress(Exception):  # what stays spooled is adopted after a restart
            await asyncio.to_thread(audit.drain)
        audit.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def _drain_audit(audit: AuditTrail, every_s: float = AUDIT_DRAIN_S) -> None:
    """Replay the audit rows spooled while ClickHouse was away (sinks/audit.py)."""
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(audit.drain)


async def _run_action_sink(settings: Settings, sink: ActionSink, writer: Connection) -> None:
    """Migrate (waiting while ClickHouse is unreachable), then write ``alert.actions``. A
    failure that is not an outage (a refused user, a missing grant) is logged, and dispatching
    goes on: the actions stay in Kafka and are written after a restart."""
    from sinks.migrate import migrate_when_available

    try:
        await migrate_when_available(
            writer, retention_days=settings.retention_days, who="dispatch actions"
        )
        await sink.start()
        await sink.run()
    except Exception:
        log.exception(
            "派单动作写入 ClickHouse 已停止（派单继续）/ alert.actions → ClickHouse stopped"
            " (dispatching goes on)"
        )


def run_dispatcher(settings: Settings) -> int:
    """The dispatcher as a process: blocks until SIGTERM/SIGINT; returns the exit status."""
    asyncio.run(serve(settings, idempotent_producer=settings.producer_idempotence))
    return 0
