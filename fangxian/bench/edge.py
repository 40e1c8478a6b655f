"""The bench's edge phase: simulated gate devices → ``fangxian edge`` → Kafka → the decide stage →
the decision back in the device's HTTP response, every piece in its own process on this machine.

- the **decide stage**: a bench worker (``--role decide``, exactly_once) on the phase's own
  event and output topics (``edge.*``) over the prefilled reference data;
- the **edge**: the real command, ``python -m fangxian.cli edge``, configured by environment as
  deployed (a register of the fleet's devices, its own outbox, its /metrics port);
- the **devices**: ``fangxian.bench.edge_devices`` — QR readers, plate cameras and generic-API
  clients on keep-alive HTTP, open-loop paced, each waiting for its answer as a device does.

Per offered load: device-observed latency p50/p95/p99 (request written → answer read), the
share answered from the fallback policy (the edge's ``fangxian_edge_requests_total`` by outcome:
the core was not in time), the edge's CPU per request (``/proc/<pid>/stat``), the CPU of the
decide worker, the broker and the device fleet over the same seconds, and how late the fleet
sent (a load it could not offer is not a load the edge was given). After the fixed loads the
phase probes for the highest load that is still *sustainable* (:func:`sustainable`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fangxian.bench.stats import Histogram, histogram_delta, histogram_summary, latency_summary
from fangxian.core.settings import Settings
from fangxian.edge.register import write_register
from fangxian.sim import CommunitySimulator
from infra.ports import free_port
from infra.process import spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("qr", "plate", "generic")
#: how often one simulated device scans (a busy turnstile: a person a second). A device waits
#: for its answer before the next scan, so the fleet offers ``rate`` only while the answers take
#: less than ``1 / PER_DEVICE_PER_S``: at 4/s per device and ~280 ms answers a first run's 250
#: devices could not offer 1,000/s (Little's law), whatever the edge did.
PER_DEVICE_PER_S = 1.0
MIN_DEVICES = 30
#: seconds the processes are watched with no load, for what they burn idle (polling, timers)
IDLE_S = 5.0
#: what each family waits before it gives up (the register's timeout_ms); the edge answers
#: from its fallback policy ``answer_margin_ms`` (150) before it
TIMEOUT_MS = {"qr": 1000, "plate": 1500, "generic": 1000}
BENCH_PSEUDONYM_KEY = "fangxian-bench-edge-key"
#: a load is sustainable when every scheduled scan was answered, at ≥ 95 % of the offered rate
#: over the load (a machine that falls behind stretches the load and lowers the rate), nothing
#: failed, and the core answered ≥ 99 % in time (fallback ≤ 1 %). How late the fleet sent
#: (``behind``) is reported, not judged: on a saturated machine it is mostly the device
#: process's own event loop waking late.
MIN_ACHIEVED_SHARE = 0.95
MAX_FALLBACK_SHARE = 0.01
#: the probe after the fixed loads: × (or ÷) this while it holds (fails), the geometric middle
#: once a load above holds and one fails; at most this many loads, and it stops when the two
#: are within ``PROBE_RESOLUTION`` of each other
PROBE_FACTOR = 1.5
PROBE_STEPS = 4
PROBE_RESOLUTION = 1.2
CLOCKS = {
    "device": "answer read − request written, on the device process's monotonic clock",
    "edge": "the edge's fangxian_edge_answer_seconds (request received → answer), "
    "waited=true, bucket estimates",
    "decide": "decision appended − scan appended (broker LogAppendTime on the phase's scan "
    "and decision topics): the Kafka hops and the decide stage, without the edge",
}


@dataclass(frozen=True)
class EdgeDevice:
    """One simulated device of the fleet, and its register row."""

    kind: str
    number: str
    community_id: str
    gate_id: str
    tokens: tuple[str, ...]

    def register_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "device_id": self.number,
            "vendor": self.kind,
            "community_id": self.community_id,
            "gate_id": self.gate_id,
            "direction": "IN",
            "measures": ["qr"] if self.kind == "qr" else ["plate"] if self.kind == "plate" else [],
            "waits": True,
            "timeout_ms": TIMEOUT_MS[self.kind],
            "addresses": ["127.0.0.1"],
            "auth": "none",
        }
        record["device_number" if self.kind == "qr" else "serial"] = self.number
        return record


def build_fleet(sim: CommunitySimulator, count: int) -> list[EdgeDevice]:
    """``count`` devices, the families in turn, spread over the simulator's communities and
    gates; each scans the residents of its own community (their tokens: enrolled as docs/edge.md
    says, the QR code and the generic API carry the token, never a raw id)."""
    fleet = []
    for i in range(count):
        community = sim.communities[i % len(sim.communities)]
        gate = community.gates[(i // len(sim.communities)) % len(community.gates)]
        tokens = tuple(r.resident_id for r in community.residents[:50])
        kind = KINDS[i % len(KINDS)]
        fleet.append(
            EdgeDevice(
                kind, f"BENCH-{kind.upper()}-{i:04d}", community.community_id, gate.gate_id, tokens
            )
        )
    return fleet


def devices_for(rate_per_s: float) -> int:
    return max(MIN_DEVICES, math.ceil(rate_per_s / PER_DEVICE_PER_S))


# --- the edge process ------------------------------------------------------------------------


def edge_environment(settings: Settings, config: dict[str, str]) -> dict[str, str]:
    """The environment ``fangxian edge`` reads: Kafka, topics and key from ``settings`` (as
    ``Settings.from_env`` names them), the edge's own ``FANGXIAN_EDGE_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANGXIAN_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["FANGXIAN_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    env["FANGXIAN_PSEUDONYM_KEY"] = settings.pseudonym_key or BENCH_PSEUDONYM_KEY
    for name, topic in asdict(settings.topics).items():
        env[f"FANGXIAN_TOPIC_{name.upper()}"] = topic
    env.update({f"FANGXIAN_EDGE_{k}": v for k, v in config.items()})
    return env


class EdgeProcess:
    """``python -m fangxian.cli edge`` as a child in its own process group."""

    def __init__(self, settings: Settings, register: Path, scratch: Path, log_path: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        self._env = edge_environment(
            settings,
            {
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "METRICS_PORT": str(self.metrics_port),
                "REGISTER": str(register),
                "OUTBOX": str(scratch / "edge-outbox.sqlite"),
            },
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout_s: float = 120.0) -> EdgeProcess:
        self._proc = spawn(
            [sys.executable, "-m", "fangxian.cli", "edge"],
            log_path=self.log_path,
            cwd=REPO_ROOT,
            env=self._env,
        )
        wait_until_ready(
            self._kafka_connected,
            proc=self._proc,
            what="fangxian edge",
            log_path=self.log_path,
            timeout_s=timeout_s,
            interval_s=0.2,
        )
        return self

    def _kafka_connected(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(json.loads(r.read()).get("kafka"))
        except OSError:
            return False

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, what="fangxian edge", grace_s=15.0)
            self._proc = None


# --- figures from the edge's /metrics and /proc ----------------------------------------------


@dataclass(frozen=True)
class EdgeSnapshot:
    """What the edge's /metrics said at one moment: requests by outcome, the answer histogram of
    waiting devices (all families summed), fallback answers."""

    outcomes: dict[str, float]
    answer: Histogram
    fallback_answers: float


def parse_edge_metrics(text: str) -> EdgeSnapshot:
    from prometheus_client.parser import text_string_to_metric_families

    outcomes: dict[str, float] = {}
    buckets: dict[float, float] = {}
    count = total = fallback = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "fangxian_edge_requests_total":
                outcome = s.labels["outcome"]
                outcomes[outcome] = outcomes.get(outcome, 0.0) + s.value
            elif s.name.startswith("fangxian_edge_answer_seconds") and (
                s.labels.get("waited") == "true"
            ):
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
                elif s.name.endswith("_count"):
                    count += s.value
                elif s.name.endswith("_sum"):
                    total += s.value
            elif s.name == "fangxian_edge_fallback_answers_total":
                fallback += s.value
    answer = {"buckets": sorted([le, n] for le, n in buckets.items()), "count": count, "sum": total}
    return EdgeSnapshot(outcomes, answer, fallback)


def answer_delta(after: Histogram, before: Histogram) -> Histogram:
    """``histogram_delta`` where ``before`` may have no buckets yet (no answer before it)."""
    if not before["buckets"]:
        before = {"buckets": [[le, 0.0] for le, _ in after["buckets"]], "count": 0.0, "sum": 0.0}
    return histogram_delta(after, before)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (its threads included) from /proc."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat), every core."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in first]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def sustainable(load: dict[str, Any]) -> bool:
    """Whether one load's figures show a load this machine sustains (see the constants)."""
    scheduled = load.get("scheduled") or 0
    share = load.get("fallback_share")
    return (
        scheduled > 0
        and load.get("answered") == scheduled
        and (load.get("achieved_per_s") or 0) >= MIN_ACHIEVED_SHARE * load["offered_per_s"]
        and not load.get("errors")
        and share is not None
        and share <= MAX_FALLBACK_SHARE
    )


def load_figures(
    fleet: dict[str, Any],
    before: EdgeSnapshot,
    after: EdgeSnapshot,
    cpu: dict[str, float | None],
    busy: tuple[float, float],
) -> dict[str, Any]:
    """One load's figures from what the fleet observed and the edge's counters around it."""
    outcomes = {
        k: round(after.outcomes.get(k, 0.0) - before.outcomes.get(k, 0.0))
        for k in sorted(set(after.outcomes) | set(before.outcomes))
    }
    waited = outcomes.get("answered", 0) + outcomes.get("fallback", 0)
    fallback = outcomes.get("fallback", 0)
    answered = fleet["answered"]
    edge_cpu = cpu.get("edge")
    figures: dict[str, Any] = {
        "offered_per_s": fleet["offered_per_s"],
        # answered scans over the span they were sent in (see edge_devices)
        "achieved_per_s": round(answered / fleet["send_seconds"]) if fleet["send_seconds"] else 0,
        "devices": fleet["devices"],
        "scheduled": fleet["scheduled"],
        "answered": answered,
        "device": latency_summary(fleet["latency_ms"]),
        "behind": latency_summary(fleet["behind_ms"]),
        "edge": histogram_summary(answer_delta(after.answer, before.answer)),
        "fallback_share": round(fallback / waited, 4) if waited else None,
        "outcomes": outcomes,
        "statuses": fleet["statuses"],
        "by_kind": fleet["by_kind"],
        "errors": fleet["errors"],
        "generic_fallback_seen": fleet["generic_fallback_seen"],
        "edge_cpu_ms_per_request": round(edge_cpu / answered * 1000, 3)
        if edge_cpu is not None and answered
        else None,
        "cpu_s": {**cpu, "devices": fleet["cpu_s"]},
        "machine_busy_share": round(busy[0] / busy[1], 3) if busy[1] else None,
    }
    figures["sustainable"] = sustainable(figures)
    return figures


# --- running the loads -----------------------------------------------------------------------


def run_fleet(
    edge: EdgeProcess, fleet: Sequence[EdgeDevice], rate: float, seconds: float, scratch: Path
) -> dict[str, Any]:
    """One load: ``python -m fangxian.bench.edge_devices`` with ``devices_for(rate)`` devices."""
    devices = [asdict(d) for d in fleet[: devices_for(rate)]]
    job_path = scratch / f"fleet-{int(rate)}.json"
    out = scratch / f"fleet-{int(rate)}-out.json"
    job = {
        "host": "127.0.0.1",
        "port": edge.port,
        "devices": devices,
        "rate_per_s": rate,
        "duration_s": seconds,
        "out": str(out),
    }
    job_path.write_text(json.dumps(job), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "fangxian.bench.edge_devices", str(job_path)],
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=seconds + 120,
        capture_output=True,
    )
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def measure_load(
    edge: EdgeProcess,
    fleet: Sequence[EdgeDevice],
    rate: float,
    seconds: float,
    scratch: Path,
    pids: dict[str, int | None],
    settings: Settings | None = None,
) -> dict[str, Any]:
    """One load's figures; with ``settings`` also the decide part on the broker's clock."""
    before = parse_edge_metrics(edge.metrics_text())
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before = machine_busy()
    result = run_fleet(edge, fleet, rate, seconds, scratch)
    time.sleep(0.5)  # the last answers' counters
    busy_after = machine_busy()
    cpu = {}
    for name, pid in pids.items():
        b, a = cpu_before[name], cpu_seconds(pid)
        cpu[name] = round(a - b, 3) if a is not None and b is not None else None
    after = parse_edge_metrics(edge.metrics_text())
    busy = (busy_after[0] - busy_before[0], busy_after[1] - busy_before[1])
    figures = load_figures(result, before, after, cpu, busy)
    if settings is not None:
        since_ms = int(result["started_at"] * 1000)
        until_ms = since_ms + int(result["seconds"] * 1000) + 200
        figures["decide"] = broker_clock(settings, since_ms, until_ms)
    log.info("edge at %.0f/s: %s", rate, {k: v for k, v in figures.items() if k != "cpu_s"})
    return figures


def broker_clock(settings: Settings, since_ms: int, until_ms: int) -> dict[str, Any]:
    """Decision appended − scan appended (LogAppendTime) for the scans appended in
    [``since_ms``, ``until_ms``]: the decide stage and its Kafka hops, without the edge."""
    from kafka import KafkaConsumer, TopicPartition

    from schemas import Codec

    codec = Codec()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)

    def appended(topic: str, record: str, until: int) -> dict[str, int]:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        starts = consumer.offsets_for_times({tp: since_ms for tp in parts})
        out: dict[str, int] = {}
        for tp in parts:
            found = starts.get(tp)
            if found is None:
                continue
            consumer.seek(tp, found.offset)
            deadline = time.monotonic() + 30
            while consumer.position(tp) < ends[tp] and time.monotonic() < deadline:
                for msg in consumer.poll(timeout_ms=500, max_records=5000).get(tp, []):
                    if msg.value is None or msg.timestamp > until:
                        continue
                    event_id = codec.decode(record, msg.value, validate=False)["event_id"]
                    out.setdefault(event_id, msg.timestamp)
        return out

    try:
        scans = appended(settings.topics.gate_scans, "GateScan", until_ms)
        decisions = appended(settings.topics.gate_decisions, "GateDecision", until_ms + 60_000)
    finally:
        consumer.close()
    deltas = [float(decisions[e] - t) for e, t in scans.items() if e in decisions]
    return {"scans": len(scans), "decided": len(deltas), **latency_summary(deltas)}


def idle_cpu(pids: dict[str, int | None], seconds: float) -> dict[str, float | None]:
    """Each process's CPU share of one core over ``seconds`` with no device sending, and the
    whole machine's busy share (other users of the machine included)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before = machine_busy()
    time.sleep(seconds)
    busy_after = machine_busy()
    out: dict[str, float | None] = {}
    for name, pid in pids.items():
        b, a = before[name], cpu_seconds(pid)
        out[name] = round((a - b) / seconds, 3) if a is not None and b is not None else None
    total = busy_after[1] - busy_before[1]
    out["machine_busy_share"] = (
        round((busy_after[0] - busy_before[0]) / total, 3) if total else None
    )
    return out


def next_probe(results: Sequence[dict[str, Any]]) -> float | None:
    """The next load to try for the highest sustainable one, given every load so far
    (``None``: found to ``PROBE_RESOLUTION``, or nothing held even at a tenth of the lowest)."""
    good = [r["offered_per_s"] for r in results if r["sustainable"]]
    tried = [r["offered_per_s"] for r in results]
    if not good:
        below = min(tried) / PROBE_FACTOR
        return round(below) if below >= max(tried) / 10 and below >= 1 else None
    top = max(good)
    failed = [
        r["offered_per_s"] for r in results if not r["sustainable"] and r["offered_per_s"] > top
    ]
    if not failed:
        return round(top * PROBE_FACTOR)
    bottom = min(failed)
    if bottom / top <= PROBE_RESOLUTION:
        return None
    return round(math.sqrt(top * bottom))


def measure_edge(
    settings: Settings,
    sim: CommunitySimulator,
    loads: Sequence[float],
    *,
    seconds: float,
    pids: dict[str, int | None],
    log_dir: Path,
    probe: bool = True,
) -> dict[str, Any]:
    """Start the edge on ``settings`` (the decide stage already running on them), warm it up,
    run each load, then probe for the highest sustainable one; stop the edge."""
    top = max(loads) * PROBE_FACTOR**PROBE_STEPS
    fleet = build_fleet(sim, devices_for(top))
    with tempfile.TemporaryDirectory(prefix="fangxian-bench-edge-") as tmp:
        scratch = Path(tmp)
        register = scratch / "devices.register.json"
        write_register([d.register_record() for d in fleet], register)
        edge = EdgeProcess(settings, register, scratch, log_dir / "edge.log").start()
        try:
            pids = {"edge": edge.pid, **pids}
            warmup = _warm_up(edge, fleet, scratch, pids)
            idle = idle_cpu(pids, IDLE_S)
            results = [
                measure_load(edge, fleet, r, seconds, scratch, pids, settings) for r in loads
            ]
            for _ in range(PROBE_STEPS if probe else 0):
                rate = next_probe(results)
                if rate is None:
                    break
                results.append(measure_load(edge, fleet, rate, seconds, scratch, pids, settings))
            if not edge.alive():
                raise RuntimeError(f"the edge died during the loads; log {edge.log_path}")
        finally:
            edge.stop()
    good = [r["offered_per_s"] for r in results if r["sustainable"]]
    return {
        "edge": "subprocess (python -m fangxian.cli edge): register, outbox, /metrics as deployed",
        "decide": "subprocess (python -m fangxian.bench.worker --role decide), exactly_once",
        "devices": "subprocess (python -m fangxian.bench.edge_devices): keep-alive HTTP/1.1, "
        f"families {'/'.join(KINDS)} in turn, ≤ {PER_DEVICE_PER_S:g} scans/s per device",
        "timeouts_ms": TIMEOUT_MS,
        "clocks": CLOCKS,
        "sustainable_when": {
            "answered": "every scheduled scan",
            "achieved_share_of_offered_min": MIN_ACHIEVED_SHARE,
            "fallback_share_max": MAX_FALLBACK_SHARE,
            "errors": 0,
        },
        "load_seconds": seconds,
        "warmup": warmup,
        "idle_cpu_share": idle,
        "loads": results,
        "highest_sustainable_per_s": max(good) if good else None,
    }


def _warm_up(
    edge: EdgeProcess, fleet: Sequence[EdgeDevice], scratch: Path, pids: dict[str, int | None]
) -> list[dict[str, Any]]:
    """100 scans/s for 3 s until the core answers them all in time (the decide stage has joined
    its group and the edge follows the decisions), at most ~60 s."""
    rounds = []
    deadline = time.monotonic() + 60
    while True:
        figures = measure_load(edge, fleet, 100.0, 3.0, scratch, pids)
        rounds.append({k: figures[k] for k in ("answered", "fallback_share", "device")})
        if figures["fallback_share"] == 0 or time.monotonic() > deadline:
            return rounds
