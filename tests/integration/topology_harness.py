"""Parts of the fault-matrix tests: steady scan traffic into real Kafka, a read_committed watch
of what the decide stage committed, stage processes started like an operator starts them."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from fangxian.core.settings import Settings, Topics
from fangxian.ingest.produce import RecordProducer
from schemas import Codec
from tests.integration.scenario_script import community_rules, credit_code, resident

ROOT = Path(__file__).resolve().parents[2]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Town:
    """Communities with registered households (two residents each)."""

    communities: list[str]
    households: dict[str, list[str]]  # household -> resident ids
    community_of: dict[str, str]  # household -> community

    @classmethod
    def make(cls, communities: int, households: int) -> Town:
        cids = [credit_code(f"9135010{i:03d}MA00001") for i in range(communities)]
        hh: dict[str, list[str]] = {}
        where: dict[str, str] = {}
        for c, cid in enumerate(cids):
            for h in range(households):
                name = f"hh-{c}-{h}-{uuid.uuid4().hex[:6]}"
                hh[name] = [f"{name}-a", f"{name}-b"]
                where[name] = cid
        return cls(cids, hh, where)

    def load(self, settings: Settings, **rules: Any) -> None:
        t0 = now_ms() - 3_600_000
        producer = RecordProducer(settings)
        for cid in self.communities:
            producer.send("CommunityRules", community_rules(cid, updated_at=t0, **rules))
        for household, members in self.households.items():
            for rid in members:
                producer.send(
                    "Resident",
                    resident(
                        rid, community=self.community_of[household], household=household,
                        updated_at=t0,
                    ),
                )  # fmt: skip
        producer.close()

    def scan(
        self,
        *,
        direction: str = "IN",
        subject: str | None = None,
        avoid: frozenset[str] = frozenset(),
        **changes: Any,
    ) -> dict[str, Any]:
        """A scan of ``subject`` (a random resident not in ``avoid`` when None)."""
        while subject is None or subject in avoid:
            household = random.choice(list(self.households))
            subject = random.choice(self.households[household])
        household = subject.rsplit("-", 1)[0]
        record = {
            "event_id": str(uuid.uuid4()),
            "community_id": self.community_of[household],
            "gate_id": "east-gate",
            "device_id": "qr-east-01",
            "direction": direction,
            "subject_type": "RESIDENT",
            "subject_id": subject,
            "household_id": household,
            "method": "QR",
            "health_code": "GREEN",
            "face_consent": False,
            "temperature_c": 36.5,
            "event_time": now_ms(),
        }
        record.update(changes)
        return record


class Traffic(threading.Thread):
    """Scans at ``rate`` per second (paced in 50 ms steps) until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        make: Callable[[], dict[str, Any]],
        rate: float,
        **producer_config: Any,
    ) -> None:
        super().__init__(daemon=True)
        self._producer = RecordProducer(settings, **{"acks": "all", **producer_config})
        self._make = make
        self._rate = rate
        self._halt = threading.Event()
        self.sent: dict[str, float] = {}  # event_id -> wall-clock seconds sent
        self._lock = threading.Lock()
        self.error: BaseException | None = None  # a harness bug: stop() raises it
        self.refused = 0  # scans the producer did not accept (never in ``sent``)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # stop() raises it: a test never passes on no traffic
            self.error = err
            raise

    def _run(self) -> None:
        began = time.time()
        n = 0
        while not self._halt.is_set():
            due = int((time.time() - began) * self._rate)
            while n < due:
                scan = self._make()
                n += 1
                try:
                    self._producer.send("GateScan", scan)
                except KafkaError:  # the device's producer gave up on it (a broker away)
                    self.refused += 1
                    continue
                with self._lock:
                    self.sent[scan["event_id"]] = time.time()
            time.sleep(0.05)
        self._producer.close()

    def send(self, record_name: str, record: dict[str, Any]) -> None:
        """One scripted record beside the traffic (same producer thread-safety as kafka-python)."""
        self._producer.send(record_name, record)
        self._producer.flush()
        if record_name == "GateScan":
            with self._lock:
                self.sent[record["event_id"]] = time.time()

    def stop(self) -> None:
        self._halt.set()
        if self.ident is None:  # never started: used only for scripted ``send``s
            self._producer.close()
        else:
            self.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"the traffic thread failed: {self.error!r}") from self.error

    def sent_between(self, start: float, end: float) -> list[str]:
        with self._lock:
            return [e for e, t in self.sent.items() if start <= t < end]


class Watch(threading.Thread):
    """Reads gate.decisions and alerts read_committed from the beginning, as staff would."""

    def __init__(self, settings: Settings, isolation: str = "read_committed") -> None:
        super().__init__(daemon=True)
        self._settings = settings
        self._isolation = isolation  # read_uncommitted: what a gate reading early would see
        self._halt = threading.Event()
        self.decisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.decided_at: dict[str, float] = {}
        self.alerts: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        t = self._settings.topics
        codec = Codec()
        consumer = KafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=self._isolation,
            reconnect_backoff_max_ms=1000,
        )
        parts = [
            TopicPartition(topic, p)
            for topic in (t.gate_decisions, t.alerts)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        while not self._halt.is_set():
            try:
                polled = consumer.poll(timeout_ms=200)
            except Exception:  # a broker restart: keep watching
                time.sleep(0.5)
                continue
            seen = time.time()
            with self._lock:
                for tp, messages in polled.items():
                    for m in messages:
                        if tp.topic == t.gate_decisions:
                            d = codec.decode("GateDecision", m.value)
                            self.decisions[d["event_id"]].append(d)
                            self.decided_at.setdefault(d["event_id"], seen)
                        else:
                            self.alerts.append(codec.decode("Alert", m.value))
        consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def wait_for(self, what: str, cond: Callable[[Watch], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if cond(self):
                    return
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout_s}s")

    def alert_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(a["alert_id"] for a in self.alerts)

    def decision_of(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.decisions.get(event_id)
            return found[0] if found else None


def decided_share(
    traffic: Traffic, watch: Watch, start: float, end: float, within_s: float
) -> float:
    """Of the scans sent in [start, end), the share whose decision was committed within
    ``within_s`` of being sent."""
    sent = [(e, traffic.sent[e]) for e in traffic.sent_between(start, end)]
    if not sent:
        return 1.0
    ok = sum(1 for e, t in sent if watch.decided_at.get(e, float("inf")) - t <= within_s)
    return ok / len(sent)


def decision_rate(traffic: Traffic, watch: Watch, start: float, end: float) -> float:
    """Decisions committed in [start, end) over scans offered in [start, end)."""
    offered = len(traffic.sent_between(start, end))
    if not offered:
        return 1.0
    with watch._lock:
        decided = sum(1 for t in watch.decided_at.values() if start <= t < end)
    return decided / offered


def stage_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FANGXIAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        FANGXIAN_CLICKHOUSE_URL=settings.clickhouse_url,
        FANGXIAN_APP_ID=settings.app_id,
        FANGXIAN_METRICS_PORT=str(settings.metrics_port),
        FANGXIAN_SINK_METRICS_PORT=str(settings.sink_metrics_port),
        FANGXIAN_SINK_FLUSH_S=str(settings.sink_flush_s),
        FANGXIAN_PROCESSING_GUARANTEE=settings.processing_guarantee,
        PYTHONPATH=str(ROOT),
        # assignments, restores and rewinds in the stage log (a failing fault test's evidence)
        FANGXIAN_LOG_LEVELS="streams.stages.decide=INFO",
    )
    for f in fields(Topics):
        env["FANGXIAN_TOPIC_" + f.name.upper()] = getattr(settings.topics, f.name)
    return env


@contextmanager
def stage_process(
    settings: Settings, role: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``fangxian worker --role ROLE`` as a child process (killed at the end if still alive)."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fangxian.cli", "worker", "--role", role],
            env=stage_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def exact_counts(url: str, table: str, key: str) -> tuple[int, int]:
    from sinks import open_writer

    writer = open_writer(url)
    try:
        total, distinct = writer.query(
            f"SELECT count(), uniqExact({key}) FROM {writer.database}.{table}"
        )[0]
        return int(total), int(distinct)
    finally:
        writer.close()
