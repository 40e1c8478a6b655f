"""``fangxian worker``: the decide stage, the sink stage and the on-duty dispatcher as supervised
OS processes.

A sink that stalls (ClickHouse away, a slow insert, a full buffer) cannot block a gate: the
stages share no event loop, no consumer group and no process. ``--role decide``, ``--role
sink`` or ``--role dispatch`` runs one of them in this process (docker-compose runs them as
separate services).

The supervisor restarts a child that dies (with a growing back-off, reset after a minute of
good running) and forwards SIGTERM/SIGINT to both children, then waits for them to stop cleanly.

- decide process: reference store, decide stage, ``/metrics`` on ``metrics_port``;
- sink process: ClickHouse migrations, sink stage, the on-duty log (alerts → staff log,
  read_committed), the daily report crontab (00:10 local), ``/metrics`` on
  ``sink_metrics_port``;
- dispatch process: the on-duty dispatcher (``streams/dispatch/``: alerts → staff, the
  acknowledge endpoint on ``ack_port``, escalation, ``alert.actions`` → ClickHouse,
  ``/metrics`` on ``dispatch_metrics_port``). It needs
  ``FANGXIAN_ROSTER_KEY`` and ``FANGXIAN_ACK_LINK_KEY``: without them the supervisor does not
  start it and says so in its log (a child that can only fail would restart forever); ``--role
  dispatch`` without them fails at once with the CLI's explanation.
- edge process: the gate edge (``fangxian.edge.service``: device HTTP, outbox, decisions back,
  fallback; ``/metrics`` on ``FANGXIAN_EDGE_METRICS_PORT``), started when the device register
  is configured (``FANGXIAN_EDGE_REGISTER`` or ``FANGXIAN_EDGE_REGISTER_FILE``); ``--role
  edge`` runs it in this process like ``fangxian edge`` (docs/edge.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings

log = logging.getLogger(__name__)
staff_log = logging.getLogger("fangxian.on_duty")

ROLES = ("decide", "sink", "dispatch", "edge")
DISPATCH_KEYS = (("FANGXIAN_ROSTER_KEY", "roster_key"), ("FANGXIAN_ACK_LINK_KEY", "ack_link_key"))
#: the gate edge runs as a worker role when its device register is configured
EDGE_REGISTER_ENV = "FANGXIAN_EDGE_REGISTER"


def edge_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether this deployment runs the gate edge here: its register is configured."""
    e = os.environ if env is None else env
    return bool(e.get(EDGE_REGISTER_ENV) or e.get(EDGE_REGISTER_ENV + "_FILE"))


def missing_dispatch_keys(settings: Settings) -> list[str]:
    """The environment variables the dispatcher needs and that are not set."""
    return [env for env, attr in DISPATCH_KEYS if not getattr(settings, attr)]


def dispatch_writes_actions(settings: Settings) -> bool:
    """The dispatcher's ``alert.actions`` → ClickHouse loop runs against a ClickHouse server
    only: an embedded chdb is one engine in one process, and the sink process has it."""
    from sinks.base import ServerTarget, parse_url

    return isinstance(parse_url(settings.clickhouse_url), ServerTarget)


def supervised_roles(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """The roles the supervisor starts: the two stages; the dispatcher only with its keys; the
    gate edge only when its device register is configured (``env``: default ``os.environ``)."""
    roles = ["decide", "sink"]
    missing = missing_dispatch_keys(settings)
    if not missing:
        roles.append("dispatch")
    else:
        names = ", ".join(missing)
        staff_log.warning(
            "值班派单未启动：未设置 %s（告警不会派发给值班人员）。"
            " On-duty dispatcher NOT started: %s not set (alerts will not be dispatched to"
            " staff); set them and restart the worker, or run `fangxian dispatch` elsewhere.",
            names,
            names,
        )
    if edge_configured(env):
        roles.append("edge")
    else:
        log.info(
            "边缘网关未在此启动：未设置 %s。 Gate edge not started here: %s is not set"
            " (run `fangxian edge` where the devices are, or set it).",
            EDGE_REGISTER_ENV,
            EDGE_REGISTER_ENV,
        )
    return roles


# -- one role in this process ------------------------------------------------------------------
def run_role(role: str, settings: Settings) -> int:
    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "dispatch":
        return run_dispatch_role(settings)
    if role == "edge":
        return run_edge_role(settings)
    return asyncio.run(_role_main(role, settings))


def run_edge_role(settings: Settings) -> int:
    """The gate edge in this process (``FANGXIAN_EDGE_*``), until SIGTERM/SIGINT."""
    from fangxian.edge.service import EdgeConfig, run_edge

    config = EdgeConfig.from_env()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_edge(settings, config, stop=stop)

    asyncio.run(main())
    log.info("edge stopped 边缘网关已停止")
    return 0


def run_dispatch_role(settings: Settings) -> int:
    """The dispatcher in this process, with its ``alert.actions`` → ClickHouse loop; its
    producer is idempotent unless ``producer_idempotence`` is off (a broker without it)."""
    from streams.dispatch.stage import serve

    with_action_sink = dispatch_writes_actions(settings)
    if not with_action_sink:
        log.warning(
            "派单进程不写 ClickHouse：嵌入式 chdb 只属于 sink 进程（alert.actions 仍在 Kafka）。"
            " The dispatcher does not write alert.actions to ClickHouse: the embedded chdb"
            " belongs to the sink process (the actions stay in Kafka); use a ClickHouse server."
        )
    asyncio.run(
        serve(
            settings,
            with_action_sink=with_action_sink,
            idempotent_producer=settings.producer_idempotence,
        )
    )
    log.info("dispatch stage stopped 派单进程已停止")
    return 0


async def _role_main(role: str, settings: Settings) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from fangxian.core.gctune import apply_mode
    from fangxian.core.metrics import Metrics
    from streams.runtime import DecideRuntime, SinkRuntime

    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    port = settings.metrics_port if role == "decide" else settings.sink_metrics_port
    start_http_server(port, addr=settings.bind_host, registry=registry)
    runtime: DecideRuntime | SinkRuntime
    extras: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
    if role == "decide":
        runtime = DecideRuntime(settings, metrics=metrics)
    else:
        runtime = SinkRuntime(settings, metrics=metrics)
        extras = [
            lambda stop: relay_alerts_to_duty_log(settings, stop),
            lambda stop: publish_reports_daily(settings, stop),
        ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # the on-duty log relay needs only Kafka: it runs while the sink still waits for ClickHouse
    tasks = [asyncio.create_task(extra(stop)) for extra in extras]
    stopper = asyncio.create_task(stop.wait())
    # the sink's start waits for ClickHouse as long as it takes: a SIGTERM meanwhile ends it
    # (the decide stage's start is bounded and is let finish, as before)
    starting = asyncio.create_task(runtime.start(), name=f"{role}-start")
    waited = [starting, stopper] if role == "sink" else [starting]
    await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await _stop_role(runtime, role, stop, tasks, done=set())
        return 0
    starting.result()  # a start that failed (not an outage) fails the process: restarted
    if role == "decide":
        # reference data and restored state are long-lived: out of the collector's walks
        gc_setup = apply_mode(settings.decide_gc)
        log.info("decide collector 垃圾回收设置: %s", gc_setup)
    log.info("%s stage running 阶段运行中 (metrics on %s:%d)", role, settings.bind_host, port)
    tasks.insert(0, asyncio.create_task(runtime.run(), name=role))
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    await _stop_role(runtime, role, stop, tasks, done)
    return 0


async def _stop_role(
    runtime: Any,
    role: str,
    stop: asyncio.Event,
    tasks: Sequence[asyncio.Task[None]],
    done: set[asyncio.Task[Any]],
) -> None:
    await runtime.stop()
    stop.set()
    for task in tasks:
        if task not in done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a crash of the stage re-raises here: the supervisor restarts us
    log.info("%s stage stopped 阶段已停止", role)


async def relay_alerts_to_duty_log(settings: Settings, stop: asyncio.Event) -> None:
    """Every committed alert reaches the on-duty staff log (zh-CN first, English beside it);
    read_committed, so an aborted decide transaction never pages anyone."""
    from aiokafka import AIOKafkaConsumer

    from schemas import Codec, InvalidEvent
    from streams.notify import alert_line, should_notify

    codec = Codec()
    consumer = AIOKafkaConsumer(
        settings.topics.alerts,
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_client_kwargs(settings, "aiokafka"),
        group_id=f"{settings.app_id}-duty-log",
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for m in messages:
                    try:
                        alert = codec.decode("Alert", m.value or b"", validate=False)
                    except InvalidEvent as err:
                        log.error("undecodable alert: %s", err)
                        continue
                    if should_notify(alert):
                        staff_log.warning("%s", alert_line(alert))
    finally:
        await consumer.stop()


async def publish_reports_daily(settings: Settings, stop: asyncio.Event) -> None:
    """社区疫情信息报表: at 00:10 local, yesterday's report of every active community to
    ``reports.daily`` (idempotent: one key per community and day)."""
    zone = ZoneInfo(settings.default_timezone)
    while not stop.is_set():
        now = dt.datetime.now(zone)
        run_at = now.replace(hour=0, minute=10, second=0, microsecond=0)
        if run_at <= now:
            run_at += dt.timedelta(days=1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=(run_at - now).total_seconds())
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, _publish_yesterday, settings)
        except Exception:
            log.exception("daily report publishing failed 日报上报失败; next try tomorrow")


def _publish_yesterday(settings: Settings) -> None:
    from sinks import clickhouse_options, open_writer
    from streams.daily_reports import kafka_producer, publish_day

    zone = ZoneInfo(settings.default_timezone)
    yesterday = dt.datetime.now(zone).date() - dt.timedelta(days=1)
    writer = open_writer(settings.clickhouse_url, **clickhouse_options(settings))
    producer = kafka_producer(settings.kafka_bootstrap, **kafka_client_kwargs(settings))
    try:
        keys = publish_day(
            writer, producer, settings.topics.reports_daily, yesterday, settings.default_timezone
        )
        log.info("daily reports published 日报已上报: %d (%s)", len(keys), yesterday)
    finally:
        producer.close()
        writer.close()


# -- the supervisor ----------------------------------------------------------------------------
class Child:
    """One supervised child process and its restart bookkeeping."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = 1.0
        self.restart_at = 0.0
        self.restarts = 0

    def spawn(self, popen: Callable[..., subprocess.Popen[bytes]]) -> None:
        self.proc = popen(self.argv)
        self.started = time.monotonic()
        log.info("started %s stage 已启动 (pid %d)", self.name, self.proc.pid)


def supervise(
    children: Sequence[Child],
    *,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    stop_grace_s: float = 25.0,
    poll_s: float = 0.2,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Run ``children`` until SIGTERM/SIGINT (or ``should_stop()``); restart any that dies."""
    stopping = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["flag"] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.spawn(popen)
        while not stopping["flag"] and not (should_stop is not None and should_stop()):
            now = time.monotonic()
            for child in children:
                if child.proc is not None and child.proc.poll() is not None:
                    code = child.proc.returncode
                    if now - child.started > 60:
                        child.backoff = 1.0
                    child.restart_at = now + child.backoff
                    log.error(
                        "%s stage exited (%s), restarting in %.0fs 阶段退出，将重启",
                        child.name,
                        code,
                        child.backoff,
                    )
                    child.backoff = min(child.backoff * 2, 30.0)
                    child.proc = None
                if child.proc is None and now >= child.restart_at:
                    child.restarts += 1
                    child.spawn(popen)
            time.sleep(poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_children(children, stop_grace_s)
    return 0


def _stop_children(children: Sequence[Child], grace_s: float) -> None:
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
        assert child.proc is not None
        child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in running:
        assert child.proc is not None
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s stage did not stop in %.0fs, killed", child.name, grace_s)
            child.proc.kill()
            child.proc.wait()


def run_worker(role: str | None, settings: Settings, extra_args: Sequence[str] = ()) -> int:
    """``fangxian worker [--role decide|sink|dispatch|edge]``."""
    if role is not None:
        return run_role(role, settings)
    return supervise(worker_children(settings, extra_args))


def worker_children(settings: Settings, extra_args: Sequence[str] = ()) -> list[Child]:
    return [
        Child(r, [sys.executable, "-m", "fangxian.cli", *extra_args, "worker", "--role", r])
        for r in supervised_roles(settings)
    ]
