"""The gate edge under faults, on real Kafka brokers with real processes (issue 18). Each case
has a control that shows the failure it guards against:

(a) the decide stage (a ``fangxian worker --role decide`` process) killed with SIGKILL: the QR
    reader is answered from the fallback policy inside its timeout, the scans reach Kafka at
    once, and when a new decide process has decided them the edge raises
    ``EDGE_FALLBACK_DISAGREED`` once for each scan it let through that the core refused — and
    for no other. Controls: with the core up, the same visitor pass is refused by the core
    (so "allowed, then refused" is a real disagreement); while decide is down no decision
    exists for the scans; the fallback answers the core agrees with raise nothing.
(b) the Kafka broker (this module's own) stopped for 30 s under device traffic, the edge run
    as ``fangxian worker --role edge``: every device request is answered (95 % inside the
    device's timeout, none later than half a timeout over it), the outbox holds what was
    accepted, and afterwards the scans in Kafka are exactly the acknowledged ones, each once.
    Controls: the broker's port refused connections the whole window, and the outbox depth rose
    during it (nothing was produced around it).
(c) ``kill -9`` of a ``fangxian edge`` process mid-stream, the broker frozen (SIGSTOP) for the
    last seconds before it so that Kafka has not confirmed what the edge acknowledged: after a
    restart on the same outbox, every scan a device was told "accepted" is in Kafka (copies of
    records Kafka wrote but never confirmed are counted, not failed). Control: the dead edge's
    outbox held acknowledged scans Kafka had not confirmed — an edge that kept them in memory
    would have lost them.
(d) a plate camera resending the same event four times (one after another, and four at once):
    one scan in Kafka per event, the same answer every time, the resends answered at once.
    Control: four different events from the same camera are four scans.

Apart from the shared fixtures (``topics``, the session broker) this module needs only
committed code: the edge is the real service, in this process or as a ``fangxian`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from fangxian.core.privacy import Pseudonymiser
from fangxian.core.settings import Settings, Topics
from fangxian.edge.register import DeviceEntry, Register, write_register
from fangxian.edge.service import EdgeConfig, EdgeService
from fangxian.edge.translate import event_id
from fangxian.ingest.produce import RecordProducer
from infra.fake_devices import DeviceClient, plate_alarm, qr_form
from infra.kafka_broker import KafkaBroker
from infra.ports import free_port, port_is_open
from infra.topics import create_topics, topic_specs
from schemas import Codec, contract
from tests.integration.topology_harness import stage_env, stage_process

C = "91350100M000100Y43"
KEY = "edge-faults-key"
P = Pseudonymiser.from_text(KEY)
RESIDENT = P.token("resident", "11010519491231002X")
REG_PLATE = "闽A12345"
EXPIRED_PASS = "00077"
API_TIMEOUT_MS = 1000
QR_TIMEOUT_MS = 1000
PLATE_TIMEOUT_MS = 1500
GREEN = f"FX1R:{RESIDENT}:G"
RED = f"FX1R:{RESIDENT}:R"
EXPIRED = f"FX1V:{EXPIRED_PASS}"
DISAGREED = "EDGE_FALLBACK_DISAGREED"


def _reference_records(now: int) -> list[tuple[str, dict[str, Any]]]:
    """The community's rules, a resident, a registered car and a visitor pass that expired
    yesterday (the fallback does not read validity dates; the core does)."""
    rules = dict(contract.named_examples("CommunityRules")["CommunityRules"])
    rules.update(
        community_id=C,
        entry_limit_scope="NONE",
        curfew_start_minute=None,
        curfew_end_minute=None,
        updated_at=now,
    )
    resident = dict(contract.named_examples("Resident")["Resident.normal"])
    resident.update(resident_id=RESIDENT, community_id=C, face_consent=True, updated_at=now)
    vehicle = dict(contract.named_examples("Vehicle")["Vehicle"])
    vehicle.update(
        vehicle_id=P.token("plate", REG_PLATE),
        community_id=C,
        owner_resident_id=RESIDENT,
        valid_until=None,
        updated_at=now,
    )
    visitor = dict(contract.named_examples("VisitorPass")["VisitorPass"])
    visitor.update(
        pass_id=P.token("pass", C + EXPIRED_PASS),
        community_id=C,
        host_resident_id=RESIDENT,
        valid_from=now - 3 * 86_400_000,
        valid_until=now - 86_400_000,
        revoked=False,
        updated_at=now,
    )
    return [
        ("CommunityRules", rules),
        ("Resident", resident),
        ("Vehicle", vehicle),
        ("VisitorPass", visitor),
    ]


def _load_reference(settings: Settings) -> None:
    producer = RecordProducer(settings)
    for record_name, record in _reference_records(int(time.time() * 1000)):
        producer.send(record_name, record)
    producer.close()


def _messages(settings: Settings, topic: str) -> list[Any]:
    """Every message on ``topic`` to its end (read_uncommitted: what any reader could see)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def _decoded(settings: Settings, topic: str, record_name: str) -> list[dict[str, Any]]:
    codec = Codec()
    return [codec.decode(record_name, m.value) for m in _messages(settings, topic) if m.value]


async def _wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.3)


@dataclass
class InProcessEdge:
    """The edge service in this process (its metrics readable), with a device's HTTP client."""

    settings: Settings
    service: EdgeService
    client: DeviceClient

    def fallbacks(self) -> float:
        return _total(self.service.metrics.fallback_answers)

    def disagreements(self) -> float:
        return _total(self.service.metrics.disagreements)


def _total(counter: Any) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


@contextlib.asynccontextmanager
async def _edge_in_process(settings: Settings, tmp_path: Path) -> AsyncIterator[InProcessEdge]:
    """A QR reader, a plate camera and a JSON API device that wait for a verdict; returns once
    the edge produces to Kafka, follows the decisions and has its reference replica."""
    common: dict[str, Any] = dict(
        community_id=C, direction="IN", addresses=("127.0.0.1",), auth="none"
    )
    register = Register(
        [
            DeviceEntry(
                "qr-1", "qr", gate_id="east", device_number="R-01", timeout_ms=QR_TIMEOUT_MS,
                **common,
            ),
            DeviceEntry(
                "cam-1", "plate", gate_id="car", serial="CAM0001", timeout_ms=PLATE_TIMEOUT_MS,
                **common,
            ),
            DeviceEntry(
                "api-1", "generic", gate_id="east", serial="api-1", timeout_ms=API_TIMEOUT_MS,
                **common,
            ),
        ]
    )  # fmt: skip
    config = EdgeConfig(
        port=0,
        metrics_port=-1,
        outbox_path=str(tmp_path / "outbox.sqlite"),
        answer_margin_ms=200,
    )
    service = EdgeService(settings, config, register)
    try:
        await service.start()
        deadline = time.monotonic() + 30
        while not (
            service.kafka_connected.is_set()
            and service.decisions_following.is_set()
            and service._reference is not None
            and service._reference.ready.is_set()
        ):
            assert time.monotonic() < deadline, "the edge did not reach Kafka in 30 s"
            await asyncio.sleep(0.05)
        async with DeviceClient(f"http://127.0.0.1:{service.port}") as client:
            yield InProcessEdge(settings, service, client)
    finally:
        await service.stop()


def _scans(settings: Settings) -> list[dict[str, Any]]:
    return _decoded(settings, settings.topics.gate_scans, "GateScan")


def _scan_ids_raw(settings: Settings) -> list[str]:
    """The event id of every GateScan message on the topic, copies included."""
    return [s["event_id"] for s in _scans(settings)]


# ---------------------------------------------------------------- (a) decide stage killed


async def _core_answers(env: InProcessEdge, timeout_s: float = 90) -> None:
    """Until the decide process answers the generic API inside its timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = json.dumps(
            {
                "device_id": "api-1",
                "event_serial": f"warm-{uuid.uuid4().hex[:8]}",
                "method": "QR",
                "identifier": GREEN,
                "identifier_kind": "qr",
            }
        ).encode()
        answer = await env.client.post("/edge/api/v1/scans", body, "application/json")
        if json.loads(answer.body)["results"][0]["source"] == "core":
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the decide process never answered in time within {timeout_s} s")


def test_decide_killed_fallback_answers_in_time_and_the_disagreement_is_raised_once(
    topics: Settings, tmp_path: Path
) -> None:
    settings = topics.replace(
        pseudonym_key=KEY, metrics_port=free_port(), sink_metrics_port=free_port()
    )
    _load_reference(settings)
    log = tmp_path / "decide.log"
    expired_pass = P.token("pass", C + EXPIRED_PASS)

    async def main() -> None:
        async with _edge_in_process(settings, tmp_path) as env:
            s = env.settings
            with stage_process(s, "decide", log) as decide:
                await _core_answers(env)
                # control: the core refuses the expired visitor pass (its answer, not the edge's)
                before = env.fallbacks()
                refused = await env.client.post("/edge/qr/scan", qr_form(EXPIRED, "R-01"), None)
                assert refused.body == b"code=0001"
                assert env.fallbacks() == before
                decide.kill()  # SIGKILL, mid-run
                decide.wait()
            control_ids = set(_scan_ids_raw(s))

            answers = []
            for code in (EXPIRED, GREEN, EXPIRED, RED, GREEN, EXPIRED):
                answers.append(
                    (code, await env.client.post("/edge/qr/scan", qr_form(code, "R-01"), None))
                )
            for code, answer in answers:
                assert answer.status == 200
                assert answer.seconds < QR_TIMEOUT_MS / 1000, (code, answer.seconds)
                assert answer.body == (b"code=0001" if code == RED else b"code=0000"), code
            assert env.fallbacks() == before + len(answers)  # all six from the fallback

            new: list[dict[str, Any]] = await _wait_for(
                lambda: (
                    found
                    if len(found := [x for x in _scans(s) if x["event_id"] not in control_ids])
                    >= len(answers)
                    else None
                ),
                20,
                "the fallback-answered scans in Kafka while decide is down",
            )
            assert len(new) == len(answers)
            ids = {x["event_id"] for x in new}
            expired = {x["event_id"] for x in new if x["subject_type"] == "VISITOR"}
            assert len(expired) == 3
            visitors = {x["subject_id"] for x in new if x["subject_type"] == "VISITOR"}
            assert visitors == {expired_pass}
            # control: nobody decided them yet (the decide stage really is down)
            decided = {d["event_id"] for d in _decoded(s, s.topics.gate_decisions, "GateDecision")}
            assert not ids & decided
            assert env.disagreements() == 0

            with stage_process(s, "decide", log):
                await _wait_for(
                    lambda: (
                        ids
                        <= {
                            d["event_id"]
                            for d in _decoded(s, s.topics.gate_decisions, "GateDecision")
                        }
                    ),
                    90,
                    "the new decide process deciding the backlog",
                )
                alerts = await _wait_for(
                    lambda: (
                        found
                        if len(
                            found := [
                                a
                                for a in _decoded(s, s.topics.alerts, "Alert")
                                if a["alert_type"] == DISAGREED
                            ]
                        )
                        >= len(expired)
                        else None
                    ),
                    20,
                    "the disagreement alerts",
                )
                await asyncio.sleep(2)  # a second alert for the same scan would show by now
                alerts = [
                    a for a in _decoded(s, s.topics.alerts, "Alert") if a["alert_type"] == DISAGREED
                ]
            print(
                f"decide killed: {len(answers)} fallback answers, slowest "
                f"{max(a.seconds for _, a in answers) * 1000:.0f} ms, {len(alerts)} alerts"
            )
            assert env.disagreements() == len(expired)
            flagged = Counter(e for a in alerts for e in a["source_event_ids"])
            assert flagged == Counter(dict.fromkeys(expired, 1))  # each refused pass, once
            for alert in alerts:
                assert alert["details"]["fallback_decision"] == "ALLOW"
                assert alert["details"]["core_decision"] == "DENY"
                assert alert["subject_id"] == expired_pass
                assert alert["message_zh"].startswith("【边缘兜底判定与核心不一致】")

    asyncio.run(main())


# --------------------------------------------------------- a broker of this module's own


@pytest.fixture(scope="module")
def edge_kafka() -> Iterator[KafkaBroker]:
    """A broker for (b) and (c) alone: stopping or freezing the session broker would break
    every other test that holds a connection to it."""
    with KafkaBroker() as broker:
        yield broker


def _own_settings(broker: KafkaBroker) -> Settings:
    name = f"ef{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        app_id=f"fangxian-{name}",
        topics=Topics().with_prefix(f"{name}."),
        event_partitions=3,
        reference_partitions=2,
        pseudonym_key=KEY,
        metrics_port=free_port(),
        sink_metrics_port=free_port(),
    )
    create_topics(broker.bootstrap, topic_specs(settings))
    _load_reference(settings)
    return settings


def _device_register(path: Path) -> Path:
    """The subprocess edge's register: a JSON API device that waits for a verdict and one that
    only reports (answered as soon as the scan is in the outbox)."""
    common = {
        "vendor": "generic",
        "community_id": C,
        "gate_id": "east",
        "direction": "IN",
        "addresses": ["127.0.0.1"],
        "auth": "none",
        "timeout_ms": API_TIMEOUT_MS,
    }
    write_register(
        [
            {"device_id": "api-w", "serial": "api-w", "waits": True, **common},
            {"device_id": "api-r", "serial": "api-r", "waits": False, **common},
        ],
        path,
    )
    return path


class EdgeProcess:
    """``fangxian edge`` (or ``fangxian worker --role edge``) as an operator starts it, on a
    free loopback port."""

    def __init__(
        self, settings: Settings, tmp_path: Path, command: tuple[str, ...] = ("edge",)
    ) -> None:
        self.command = command
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = tmp_path / "edge.log"
        self.env = stage_env(settings)
        self.env.update(
            FANGXIAN_PSEUDONYM_KEY=settings.pseudonym_key,
            FANGXIAN_EDGE_HOST="127.0.0.1",
            FANGXIAN_EDGE_PORT=str(self.port),
            FANGXIAN_EDGE_METRICS_PORT=str(self.metrics_port),
            FANGXIAN_EDGE_REGISTER=str(_device_register(tmp_path / "devices.register.json")),
            FANGXIAN_EDGE_OUTBOX=str(tmp_path / "edge-outbox.sqlite"),
            FANGXIAN_EDGE_ANSWER_MARGIN_MS="200",
            # the devices here send far faster than a gate: no per-device rate limit
            FANGXIAN_EDGE_RATE="100000",
            FANGXIAN_EDGE_BURST="100000",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fangxian.cli", *self.command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            with contextlib.suppress(OSError, ValueError):
                health = json.loads(self._get("/healthz", self.port))
                if health.get("kafka"):
                    return
            time.sleep(0.2)
        raise AssertionError(
            f"the edge did not reach Kafka in {timeout_s} s:\n"
            + self.log_path.read_text(errors="replace")[-3000:]
        )

    @staticmethod
    def _get(path: str, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return str(resp.read().decode())

    def outbox_depth(self) -> float:
        for line in self._get("/metrics", self.metrics_port).splitlines():
            if line.startswith("fangxian_edge_outbox_depth "):
                return float(line.split()[1])
        raise AssertionError("no fangxian_edge_outbox_depth in /metrics")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Answer:
    serial: str
    status: int
    seconds: float
    at: float
    body: bytes


class Devices(threading.Thread):
    """``lanes`` JSON API devices posting scans back to back on their own event loop; every
    answer (or failure) is kept. A lane whose request failed sends the same scan again, as a
    device that got no answer does."""

    def __init__(self, base_url: str, device_id: str, *, lanes: int, wait: bool) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.device_id = device_id
        self.lanes = lanes
        self.wait = wait
        self.answers: list[Answer] = []
        self.failures = 0
        self.failure_kinds: Counter[str] = Counter()
        self.halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with DeviceClient(self.base_url, timeout_s=3.0) as client:
            await asyncio.gather(*(self._lane(client, n) for n in range(self.lanes)))

    async def _lane(self, client: DeviceClient, lane: int) -> None:
        await asyncio.sleep(lane * 0.13)  # gates are not in step with each other
        n = 0
        while not self.halt.is_set():
            serial = f"{self.device_id}-{lane}-{n}"
            body = json.dumps(
                {
                    "device_id": self.device_id,
                    "event_serial": serial,
                    "method": "QR",
                    "identifier": GREEN,
                    "identifier_kind": "qr",
                    "wait": self.wait,
                }
            ).encode()
            try:
                answer = await client.post("/edge/api/v1/scans", body, "application/json")
            except Exception as err:  # the edge is away: the same scan again shortly
                with self._lock:
                    self.failures += 1
                    self.failure_kinds[type(err).__name__] += 1
                await asyncio.sleep(0.1)
                continue
            with self._lock:
                self.answers.append(
                    Answer(serial, answer.status, answer.seconds, time.time(), answer.body)
                )
            if answer.status == 200:
                n += 1
            else:
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.halt.set()
        if self.ident is not None:
            self.join(timeout=30)

    def acknowledged(self) -> set[str]:
        with self._lock:
            return {event_id(self.device_id, a.serial) for a in self.answers if a.status == 200}

    def between(self, start: float, end: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.at < end]


# ------------------------------------------------------------- (b) Kafka stopped for 30 s

DOWN_S = 30.0


def test_kafka_stopped_for_30_s_the_gate_keeps_answering_and_nothing_is_lost_or_copied(
    edge_kafka: KafkaBroker, tmp_path: Path
) -> None:
    settings = _own_settings(edge_kafka)
    # the edge as the worker's role (its preflight: Kafka, topics, register, pseudonym key)
    edge = EdgeProcess(settings, tmp_path, ("worker", "--role", "edge"))
    devices = Devices(f"http://127.0.0.1:{edge.port}", "api-w", lanes=6, wait=True)
    depths: list[float] = []
    probes: list[bool] = []
    healthz: list[bool] = []  # what /healthz said of Kafka meanwhile (reported, not asserted)
    marks: dict[str, float] = {}
    try:
        edge.start()
        devices.start()
        time.sleep(3)
        marks["down"] = time.time()
        halt = threading.Event()

        def watch_outage() -> None:  # the port and the outbox, while the broker is meant away
            time.sleep(3)  # the broker's own shutdown
            while not halt.is_set() and time.time() < marks["down"] + DOWN_S:
                probes.append(port_is_open(edge_kafka.port))
                with contextlib.suppress(OSError, ValueError):
                    depths.append(edge.outbox_depth())
                with contextlib.suppress(OSError, ValueError):
                    healthz.append(bool(json.loads(edge._get("/healthz", edge.port))["kafka"]))
                time.sleep(0.5)
            marks["window_end"] = time.time()

        watcher = threading.Thread(target=watch_outage, daemon=True)
        watcher.start()
        edge_kafka.restart(down_s=DOWN_S)  # on this thread: the broker dies with its spawner
        halt.set()
        watcher.join(timeout=10)
        marks["up"] = time.time()
        time.sleep(3)
        devices.stop()
        acked = devices.acknowledged()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not acked <= set(_scan_ids_raw(settings)):
            time.sleep(1)
        time.sleep(2)  # a late copy would show by now
        in_kafka = _scan_ids_raw(settings)
        final_depth = edge.outbox_depth()
    finally:
        devices.stop()
        edge.stop()
    during = devices.between(marks["down"], marks["up"])
    late = [
        (round(a.at - a.seconds - marks["down"], 1), round(a.seconds, 2))
        for a in devices.answers
        if a.seconds >= API_TIMEOUT_MS / 1000
    ]
    print(
        f"kafka down {marks['up'] - marks['down']:.1f} s: {len(during)} answers meanwhile, "
        f"slowest {max((a.seconds for a in during), default=0) * 1000:.0f} ms; late (sent at "
        f"s after the stop, took s): {late}; outbox depth max {max(depths, default=0):.0f}; "
        f"acknowledged {len(acked)}, in Kafka {len(in_kafka)} ({len(set(in_kafka))} distinct); "
        f"request failures {dict(devices.failure_kinds)}; /healthz kafka during the outage: "
        f"{Counter(healthz)}"
    )
    # controls: the broker really was away, and the outbox really held what came meanwhile
    assert probes and not any(probes), probes
    assert depths and max(depths) >= 20 and depths[-1] > depths[0], depths
    # the gate kept answering the whole time, every request, inside the device's timeout (on
    # a saturated 2-core machine a few answers run late by a scheduling hiccup, with Kafka up
    # as well as down: at most 5 %, and never more than half a timeout late)
    assert len(during) >= 100
    assert all(a.status == 200 for a in during)
    assert devices.failures == 0
    seconds = sorted(a.seconds for a in during)
    assert seconds[int(len(seconds) * 0.95)] < API_TIMEOUT_MS / 1000, late
    assert seconds[-1] < 1.5 * API_TIMEOUT_MS / 1000, late
    # afterwards: sent = in Kafka, no loss and no copy
    assert set(in_kafka) == acked
    assert len(in_kafka) == len(acked), Counter(in_kafka).most_common(3)
    assert final_depth == 0


# -------------------------------------------------------------- (c) edge kill -9 mid-stream


def test_edge_killed_mid_stream_loses_nothing_it_acknowledged(
    edge_kafka: KafkaBroker, tmp_path: Path
) -> None:
    settings = _own_settings(edge_kafka)
    edge = EdgeProcess(settings, tmp_path)
    devices = Devices(f"http://127.0.0.1:{edge.port}", "api-r", lanes=8, wait=False)
    broker_pid = edge_kafka._proc.pid if edge_kafka._proc is not None else 0
    assert broker_pid
    frozen = False
    try:
        edge.start()
        devices.start()
        time.sleep(2)
        os.kill(broker_pid, signal.SIGSTOP)  # Kafka stops answering; the edge keeps accepting
        frozen = True
        time.sleep(2)
        edge.kill9()  # mid-stream: requests in flight on eight connections
        killed_at = time.time()
        os.kill(broker_pid, signal.SIGCONT)
        frozen = False
        acked_before_kill = {
            event_id("api-r", a.serial) for a in devices.between(0, killed_at) if a.status == 200
        }
        unconfirmed = _unconfirmed(tmp_path / "edge-outbox.sqlite") & acked_before_kill
        time.sleep(3)  # whatever the broker had read off the dead connections is written by now
        missing_at_restart = acked_before_kill - set(_scan_ids_raw(settings))
        edge.start()  # the same outbox; the devices' lanes resend what got no answer
        time.sleep(2)
        devices.stop()
        acked = devices.acknowledged()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not acked <= set(_scan_ids_raw(settings)):
            time.sleep(1)
        in_kafka = _scan_ids_raw(settings)
    finally:
        if frozen:
            os.kill(broker_pid, signal.SIGCONT)
        devices.stop()
        edge.stop()
    copies = len(in_kafka) - len(set(in_kafka))
    print(
        f"edge kill -9: {len(acked_before_kill)} acknowledged before the kill, "
        f"{len(unconfirmed)} of them unconfirmed by Kafka in the outbox, {len(missing_at_restart)}"
        f" not in Kafka at the restart; {len(acked)} acknowledged in all, {len(set(in_kafka))} "
        f"in Kafka (+{copies} copies); request failures {dict(devices.failure_kinds)}"
    )
    # control: when the edge died, Kafka had not confirmed scans it had acknowledged (an edge
    # that kept them in memory would have lost them)
    assert len(unconfirmed) >= 10
    # nothing a device was told "accepted" is lost, before the kill or after the restart
    assert acked_before_kill <= set(in_kafka)
    assert acked <= set(in_kafka)
    assert len(acked) > len(acked_before_kill)  # the restarted edge took traffic again


def _unconfirmed(outbox: Path) -> set[str]:
    """The event ids of the scans in a (dead) edge's outbox that Kafka had not confirmed."""
    db = sqlite3.connect(outbox.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT event_id FROM outbox WHERE produced_ms IS NULL AND record = 'GateScan'"
        ).fetchall()
    finally:
        db.close()
    return {r[0] for r in rows}


# ---------------------------------------------------- (d) a camera resending four times


def test_a_camera_resending_the_same_event_four_times_is_one_event(
    topics: Settings, tmp_path: Path
) -> None:
    async def main() -> None:
        settings = topics.replace(pseudonym_key=KEY)
        _load_reference(settings)
        async with _edge_in_process(settings, tmp_path) as env:
            s = env.settings
            path = "/edge/plate/alarm"
            sec = int(time.time())

            def alarm(plate_id: int) -> bytes:
                return plate_alarm(
                    serialno="CAM0001", licence=REG_PLATE, plate_id=plate_id, sec=sec
                )

            one_by_one = [await env.client.post(path, alarm(101), None) for _ in range(4)]
            at_once = await asyncio.gather(
                *(env.client.post(path, alarm(102), None) for _ in range(4))
            )
            distinct = await asyncio.gather(
                *(env.client.post(path, alarm(200 + i), None) for i in range(4))
            )
            for answer in (*one_by_one, *at_once, *distinct):
                assert answer.status == 200
                assert answer.seconds < PLATE_TIMEOUT_MS / 1000
            for resends in (one_by_one, at_once):  # the same answer to every resend
                assert len({a.body for a in resends}) == 1, [a.body for a in resends]
            assert json.loads(one_by_one[0].body)["Response_AlarmInfoPlate"]["info"] == "ok"
            # the resends after the first were answered at once, not after another wait
            assert max(a.seconds for a in one_by_one[1:]) < 0.5

            scans = await _wait_for(
                lambda: found if len(found := _scans(s)) >= 6 else None, 20, "six scans in Kafka"
            )
            await asyncio.sleep(1.5)  # a late copy would show by now
            scans = _scans(s)
            ids = Counter(x["event_id"] for x in scans)
            print(f"camera resends: {len(scans)} scans in Kafka for 12 requests, {dict(ids)}")
            assert len(scans) == 6
            assert set(ids.values()) == {1}
            # control: four different events of the same camera are four scans
            assert len(ids) == 6
            assert _messages(s, s.topics.dead_letters) == []

    asyncio.run(main())
