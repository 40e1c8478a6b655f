"""``fangxian bench``: one run against a real Apache Kafka broker it starts itself.

Phases (each can be skipped where noted): prefill → raw ceiling → decide stage alone
(``skip_decide``) → sink stage alone over its output, chdb and the server (``skip_sink``) →
changelog restore of ``restore_keys`` keys (``skip_restore``) → pipeline with chdb → pipeline
with the ClickHouse server (``skip_server``) → two workers vs one → latency at fixed offered
loads (``skip_latency``) → peak RSS with 100k / 1M residents (``skip_rss``) → the gate edge:
simulated devices through ``fangxian edge`` and the decide stage (``skip_edge``; ``edge_only``
runs the prefill of the reference data and this phase alone). Every worker is a child process
(``fangxian.bench.worker``); everything started here is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from fangxian.bench.ceiling import CLIENTS, measure_ceilings
from fangxian.bench.chart import render_chart
from fangxian.bench.edge import BENCH_PSEUDONYM_KEY, measure_edge
from fangxian.bench.latency import CLOCKS, LOG_APPEND_TIME, measure_latency
from fangxian.bench.restore import measure as measure_restore
from fangxian.bench.rss import kb_to_mb, synthetic_residents
from fangxian.bench.stats import rate, ratio
from fangxian.bench.worker import WorkerError, WorkerProcess
from fangxian.bench.workload import (
    Workload,
    committed_record_ends,
    encode_records,
    end_offsets,
    ensure_topics,
    prefill,
    prefixed,
    produce_encoded,
    reference_pairs,
)
from fangxian.core.gctune import FREEZE
from fangxian.core.progress import phase
from fangxian.core.settings import Settings
from infra.clickhouse_server import ClickHouseServer
from infra.kafka_broker import KafkaBroker
from infra.topics import create_topics, internal_topic_specs
from schemas import Codec
from schemas.topics import EVENT_TOPICS, OUTPUT_TOPICS, RECORD_OF_KIND, REFERENCE_TOPICS
from sinks import migrate, open_writer

log = logging.getLogger(__name__)

QUICK_EVENTS = 20_000
DEFAULT_EVENTS = 200_000
DEFAULT_LOADS = (1000.0, 5000.0, 20000.0)
#: the edge phase's fixed loads (device requests/s); then it probes for the highest sustainable
DEFAULT_EDGE_LOADS = (200.0, 1000.0)
DEFAULT_RSS_RESIDENTS = (100_000, 1_000_000)
POLL_S = 0.2
DEFAULT_RESTORE_KEYS = 1_000_000
QUICK_RESTORE_KEYS = 100_000


@dataclass(frozen=True)
class BenchConfig:
    events: int = DEFAULT_EVENTS
    communities: int = 20
    residents_per_community: int = 1000
    seed: int = 11
    loads: tuple[float, ...] = DEFAULT_LOADS
    load_seconds: float = 10.0
    rss_residents: tuple[int, ...] = DEFAULT_RSS_RESIDENTS
    skip_server: bool = False
    skip_latency: bool = False
    skip_rss: bool = False
    skip_two_workers: bool = False
    skip_decide: bool = False
    skip_sink: bool = False
    skip_restore: bool = False
    restore_keys: int = DEFAULT_RESTORE_KEYS
    skip_edge: bool = False
    #: only the reference data's prefill and the edge phase (no ClickHouse, no other phase)
    edge_only: bool = False
    edge_loads: tuple[float, ...] = DEFAULT_EDGE_LOADS
    profile: bool = False
    #: collector setups of the bench workers (fangxian.core.gctune); the first is used by
    #: every phase, and with more than one a ``gc`` phase compares them all
    worker_gc: tuple[str, ...] = (FREEZE,)  # as the decide stage runs (Settings.decide_gc)
    out_dir: Path = Path("bench-results")
    kafka_heap: str = "1g"

    @classmethod
    def quick(cls, **changes: Any) -> BenchConfig:
        """~20k events, 5 s per load, 100k residents only, 100k restore keys."""
        values: dict[str, Any] = {
            "events": QUICK_EVENTS,
            "load_seconds": 5.0,
            "rss_residents": (100_000,),
            "restore_keys": QUICK_RESTORE_KEYS,
        }
        values.update(changes)
        return cls(**values)


@dataclass
class _Run:
    """Services and scratch space of one bench run."""

    config: BenchConfig
    broker: KafkaBroker
    server: ClickHouseServer | None
    scratch: Path
    stamp: str
    base: Settings
    codec: Codec = field(default_factory=Codec)
    skipped: list[str] = field(default_factory=list)

    def chdb_url(self, name: str) -> str:
        path = self.scratch / f"chdb-{name}"
        return f"chdb://{path}"

    def server_url(self) -> str:
        assert self.server is not None
        return self.server.url_for(f"bench_{uuid.uuid4().hex[:8]}")

    def sink_url(self, name: str) -> tuple[str, str]:
        """(sink label, URL) for phases that need one sink: the server when it runs."""
        if self.server is not None:
            return "server", self.server_url()
        return "chdb", self.chdb_url(name)

    def fresh(self, **changes: Any) -> Settings:
        """The base settings with a new consumer group."""
        return self.base.replace(app_id=f"bench-{uuid.uuid4().hex[:8]}", **changes)

    def log_path(self, name: str) -> Path:
        """Worker logs are kept next to the results."""
        return self.config.out_dir / f"bench-{self.stamp}-logs" / f"{name}.log"


# --- services --------------------------------------------------------------------------------


@contextlib.contextmanager
def _services(config: BenchConfig) -> Iterator[_Run]:
    scratch = Path(tempfile.mkdtemp(prefix="fangxian-bench-"))
    broker: KafkaBroker | None = None
    server: ClickHouseServer | None = None
    try:
        broker = KafkaBroker(heap=config.kafka_heap, log_level="WARN").start()
        if not config.skip_server:
            server = ClickHouseServer().start()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        # a phase that names no database of its own writes into the run's scratch space
        base = Settings(
            kafka_bootstrap=broker.bootstrap, clickhouse_url=f"chdb://{scratch / 'chdb-default'}"
        )
        yield _Run(config, broker, server, scratch, stamp, base)
    finally:
        if server is not None:
            server.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# --- waiting for a consumer group ------------------------------------------------------------


def _committed(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    offsets = admin.list_group_offsets(group).get(group, {})
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def caught_up(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> bool:
    """True when every partition with data has its committed offset at its end offset (for a
    topic written in transactions pass ``committed_record_ends``: its end offsets lie past the
    last record by the control markers)."""
    return all(committed.get(tp, 0) >= end for tp, end in ends.items() if end > 0)


def _wait_caught_up(
    run: _Run,
    group: str,
    ends: dict[TopicPartition, int],
    workers: Sequence[WorkerProcess],
    timeout_s: float,
) -> float:
    """Poll the group's committed offsets until they reach ``ends``; the wall-clock time then."""
    admin = KafkaAdminClient(bootstrap_servers=run.broker.bootstrap, client_id="fangxian-bench")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if caught_up(_committed(admin, group), ends):
                return time.time()
            if not all(w.alive() for w in workers):
                raise RuntimeError(
                    f"a bench worker died; logs: {[str(w.log_path) for w in workers]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} not caught up after {timeout_s:.0f} s")
            time.sleep(POLL_S)
    finally:
        admin.close()


# --- phases ----------------------------------------------------------------------------------


def _pipeline(
    run: _Run,
    name: str,
    settings_list: Sequence[Settings],
    ends: dict[TopicPartition, int],
    expected: int,
    *,
    profile: Path | None = None,
    gc_mode: str | None = None,
) -> dict[str, Any]:
    """Start workers on the settings, let them drain the event topics, stop them."""
    gc_mode = gc_mode or run.config.worker_gc[0]
    workers = [
        WorkerProcess(
            s,
            run.log_path(f"{name}-{i}"),
            profile_prefix=profile if i == 0 else None,
            gc_mode=gc_mode,
        )
        for i, s in enumerate(settings_list)
    ]
    for app_id in {s.app_id for s in settings_list}:
        _internal_topics(next(s for s in settings_list if s.app_id == app_id))
    reports: list[dict[str, Any] | None] = []
    try:
        for w in workers:
            w.start()
        loaded = [w.wait_state("loaded", 600) for w in workers]
        go = time.time()
        for w in workers:
            w.command("go")
        timeout = 120 + expected / 500
        first_settings = settings_list[0]
        _wait_caught_up(run, first_settings.decide_group, ends, workers, timeout)
        # then the few forwarded events decided (reroute topic), then in ClickHouse (the sink)
        internal = committed_record_ends(
            run.broker.bootstrap, [first_settings.decide_reroute_topic]
        )
        _wait_caught_up(run, first_settings.decide_group, internal, workers, timeout)
        written = committed_record_ends(
            run.broker.bootstrap,
            [first_settings.decide_events_topic, *_output_topics(first_settings)],
        )
        done = _wait_caught_up(run, first_settings.sink_group, written, workers, timeout)
        firsts = [t for w in workers if (t := _first_batch_time(w)) is not None]
    finally:
        for w in workers:
            reports.append(w.stop())
    first = min(firsts) if firsts else go
    seconds = done - first
    rows: dict[str, float] = {}
    flush_s = 0.0
    for report in reports:
        for table, value in (report or {}).get("rows_written", {}).items():
            rows[table] = rows.get(table, 0) + value
        flush_s = max(flush_s, (report or {}).get("sink_flush_s", 0.0))
    total_rows = sum(rows.values())
    figures = {
        "workers": len(workers),
        "events": expected,
        "seconds": round(seconds, 3),
        "events_per_s": rate(expected, seconds),
        "seconds_incl_group_join": round(done - go, 3),
        "load_seconds": [state.get("seconds") for state in loaded],
        "rows_written": rows,
        "rows_per_s": rate(total_rows, seconds),
        "sink_rows_per_s_while_flushing": rate(total_rows, flush_s) if len(workers) == 1 else None,
        "peak_rss_mb": [kb_to_mb((r or {}).get("vmhwm_kb")) for r in reports],
        "profiled": profile is not None,  # pyinstrument slows the worker: not a clean figure
        "gc_mode": gc_mode,
        "gc": [(r or {}).get("gc") for r in reports],
        "gc_objects_loaded": [state.get("gc") for state in loaded],
        "gc_objects_at_stop": [(r or {}).get("gc_objects") for r in reports],
    }
    log.info("pipeline %s: %s", name, figures)
    return figures


def _decide(
    run: _Run, ends: dict[TopicPartition, int], expected: int, profile: Path | None = None
) -> tuple[dict[str, Any], Settings]:
    """The decide stage alone (``--role decide``), exactly_once, on a fresh app_id: events/s
    from its first batch until the ``<app_id>-decide`` group has committed the event topics and
    then the internal ``<app_id>-decide-events`` topic (read once the routing is done) to their
    ends. Returns the figures and the settings, so the sink phase reads what it produced."""
    # its own output topics, so the sink phase reads exactly what this phase decided
    topics = prefixed(run.base.topics, "stage.", OUTPUT_TOPICS)
    settings = run.fresh(processing_guarantee="exactly_once", topics=topics)
    ensure_topics(settings)  # the stage.* outputs and the fresh app_id's internal topics
    worker = WorkerProcess(
        settings,
        run.log_path("decide"),
        gc_mode=run.config.worker_gc[0],
        role="decide",
        profile_prefix=profile,
    )
    timeout = 120 + expected / 500
    report: dict[str, Any] | None = None
    try:
        worker.start()
        loaded = worker.wait_state("loaded", 600)
        go = time.time()
        worker.command("go")
        routed = _wait_caught_up(run, settings.decide_group, ends, [worker], timeout)
        internal = committed_record_ends(run.broker.bootstrap, [settings.decide_reroute_topic])
        done = _wait_caught_up(run, settings.decide_group, internal, [worker], timeout)
        first = _first_batch_time(worker) or go
    finally:
        report = worker.stop()
    seconds = done - first
    outputs = end_offsets(run.broker.bootstrap, _output_topics(settings))
    figures = {
        "role": "decide",
        "processing_guarantee": settings.processing_guarantee,
        "events": expected,
        "internal_offsets": sum(internal.values()),  # offsets, transaction markers included
        "decided": (report or {}).get("decided"),
        "output_offsets": sum(outputs.values()),
        "seconds": round(seconds, 3),
        "events_per_s": rate(expected, seconds),
        "route_seconds": round(routed - first, 3),
        "seconds_incl_group_join": round(done - go, 3),
        "load_seconds": loaded.get("seconds"),
        "peak_rss_mb": kb_to_mb((report or {}).get("vmhwm_kb")),
        "gc_mode": run.config.worker_gc[0],
        "profiled": profile is not None,  # pyinstrument slows the worker: not a clean figure
    }
    log.info("decide: %s", figures)
    return figures, settings


def _internal_topics(settings: Settings) -> None:
    """A fresh app_id's decide-events and changelog topics (the stage does not create them)."""
    create_topics(settings.kafka_bootstrap, internal_topic_specs(settings))


def _output_topics(settings: Settings) -> list[str]:
    return [getattr(settings.topics, f) for f in OUTPUT_TOPICS]


def _sink(run: _Run, decided: Settings, sink: str, url: str) -> dict[str, Any]:
    """The sink stage alone (``--role sink``) over what the decide phase produced (its
    decide-events and the output topics), into a fresh database: rows/s from its first fetched
    batch until the ``<app_id>-sink`` group has committed every partition to its end."""
    settings = decided.replace(clickhouse_url=url)
    topics = [settings.decide_events_topic, *_output_topics(settings)]
    _forget_group(run, settings.sink_group)  # a second sink phase reads it all again
    ends = committed_record_ends(run.broker.bootstrap, topics)
    records = sum(ends.values())
    worker = WorkerProcess(
        settings, run.log_path(f"sink-{sink}"), gc_mode=run.config.worker_gc[0], role="sink"
    )
    report: dict[str, Any] | None = None
    try:
        worker.start()
        worker.wait_state("loaded", 600)
        worker.command("go")
        running = float(worker.wait_state("running", 60)["t"])
        done = _wait_caught_up(run, settings.sink_group, ends, [worker], 120 + records / 500)
        started = _first_batch_time(worker) or running
    finally:
        report = worker.stop()
    rows = dict((report or {}).get("rows_written", {}))
    total_rows = sum(rows.values())
    seconds = done - started
    figures = {
        "role": "sink",
        "sink": sink,
        "record_ends": records,  # offsets after the last committed record, summed
        "rows_written": rows,
        "rows": total_rows,
        "seconds": round(seconds, 3),
        "seconds_incl_group_join": round(done - running, 3),
        "rows_per_s": rate(total_rows, seconds),
        "rows_per_s_while_flushing": rate(total_rows, (report or {}).get("sink_flush_s", 0.0)),
        "flushes": (report or {}).get("flushes"),
        "peak_rss_mb": kb_to_mb((report or {}).get("vmhwm_kb")),
    }
    log.info("sink %s: %s", sink, figures)
    return figures


def _forget_group(run: _Run, group: str) -> None:
    """Delete ``group``'s committed offsets (a group not there yet is fine)."""
    admin = KafkaAdminClient(bootstrap_servers=run.broker.bootstrap, client_id="fangxian-bench")
    try:
        if group in {g["group_id"] for g in admin.list_groups()}:
            # kafka-python answers {group: "OK" | error class name}
            for name, outcome in dict(admin.delete_groups([group])).items():
                if outcome != "OK":
                    raise RuntimeError(f"could not delete group {name}: {outcome}")
    finally:
        admin.close()


def _restore(run: _Run, keys: int) -> dict[str, Any]:
    """Restore time of one changelog partition holding ``keys`` state keys
    (``fangxian.bench.restore``), on the bench's broker."""
    return asyncio.run(measure_restore(run.broker.bootstrap, keys))


def _first_batch_time(worker: WorkerProcess) -> float | None:
    """When the worker processed its first batch (a worker given no partitions has none)."""
    try:
        return float(worker.wait_state("first_batch", 5)["t"])
    except WorkerError:
        return None


def _latency(
    run: _Run, workload: Workload, *, prefix: str = "lat.", gc_mode: str | None = None
) -> dict[str, Any]:
    cfg = run.config
    gc_mode = gc_mode or cfg.worker_gc[0]
    topics = prefixed(run.base.topics, prefix, (*EVENT_TOPICS, *OUTPUT_TOPICS))
    settings = run.fresh(topics=topics, clickhouse_url=run.chdb_url(prefix.strip(".")))
    # broker-stamped scans and decisions: scan→decision on the broker's clock
    stamped = (topics.gate_scans, topics.gate_decisions)
    ensure_topics(settings, extra_config={name: LOG_APPEND_TIME for name in stamped})
    # the decide process, as deployed (its sink is another process; none runs in this phase)
    worker = WorkerProcess(
        settings, run.log_path(prefix.strip(".")), gc_mode=gc_mode, role="decide"
    )
    try:
        worker.start()
        worker.wait_state("loaded", 600)
        worker.command("go")
        worker.wait_state("running", 60)
        loads = measure_latency(
            settings,
            run.codec,
            workload.scans[:20_000],
            cfg.loads,
            duration_s=cfg.load_seconds,
            snapshot=worker.metrics,
        )
    finally:
        report = worker.stop()
    return {
        "worker": "subprocess (python -m fangxian.bench.worker --role decide), exactly_once",
        "load_generator": "subprocess (python -m fangxian.bench.loadgen), confluent-kafka",
        "reader": "thread in the harness, confluent-kafka",
        "log_append_time_topics": list(stamped),
        "clocks": CLOCKS,
        "gc_mode": gc_mode,
        "load_seconds": cfg.load_seconds,
        "loads": loads,
        "peak_rss_mb": kb_to_mb((report or {}).get("vmhwm_kb")),
    }


def _edge(run: _Run, workload: Workload) -> dict[str, Any]:
    """Simulated gate devices → ``fangxian edge`` → Kafka → a decide-stage worker (exactly_once)
    → the decision back to the device (``fangxian.bench.edge``), on the phase's own event and
    output topics (``edge.*``) over the prefilled reference data."""
    cfg = run.config
    topics = prefixed(run.base.topics, "edge.", (*EVENT_TOPICS, *OUTPUT_TOPICS))
    settings = run.fresh(
        topics=topics, processing_guarantee="exactly_once", pseudonym_key=BENCH_PSEUDONYM_KEY
    )
    # broker-stamped scans and decisions: the decide part of a device's wait on the broker clock
    stamped = (topics.gate_scans, topics.gate_decisions)
    ensure_topics(settings, extra_config={name: LOG_APPEND_TIME for name in stamped})
    worker = WorkerProcess(
        settings, run.log_path("edge-decide"), gc_mode=cfg.worker_gc[0], role="decide"
    )
    broker = getattr(run.broker, "_proc", None)
    report = None
    try:
        worker.start()
        worker.wait_state("loaded", 600)
        worker.command("go")
        worker.wait_state("running", 60)
        figures = measure_edge(
            settings,
            workload.simulator,
            cfg.edge_loads,
            seconds=cfg.load_seconds,
            pids={"decide": worker.pid, "broker": broker.pid if broker is not None else None},
            log_dir=run.log_path("edge").parent,
        )
    finally:
        report = worker.stop()
    figures["decide_peak_rss_mb"] = kb_to_mb((report or {}).get("vmhwm_kb"))
    figures["gc_mode"] = cfg.worker_gc[0]
    return figures


def _produce_residents(run: _Run, settings: Settings, workload: Workload, total: int) -> float:
    """The simulator's reference data plus synthetic residents up to ``total``; seconds taken."""
    started = time.monotonic()
    ref = workload.simulator.reference_records()
    pairs = reference_pairs(workload.simulator)
    extra = max(0, total - len(ref["residents"]))
    resident = RECORD_OF_KIND["residents"]
    pairs += [(resident, r) for r in synthetic_residents(ref["residents"], extra)]
    encoded = encode_records(run.codec, settings.topics, pairs)
    del pairs
    asyncio.run(produce_encoded(settings.kafka_bootstrap, encoded))
    return time.monotonic() - started


def _rss(
    run: _Run, workload: Workload, ends: dict[TopicPartition, int], residents: int
) -> dict[str, Any]:
    topics = prefixed(run.base.topics, f"rss{residents}.", REFERENCE_TOPICS)
    sink, url = run.sink_url(f"rss{residents}")
    settings = run.fresh(topics=topics, clickhouse_url=url)
    ensure_topics(settings)
    produce_s = _produce_residents(run, settings, workload, residents)
    worker = WorkerProcess(
        settings, run.log_path(f"rss{residents}"), gc_mode=run.config.worker_gc[0], role="decide"
    )
    report = None
    try:
        worker.start()
        loaded = worker.wait_state("loaded", 1800)
        worker.command("go")
        _wait_caught_up(run, settings.decide_group, ends, [worker], 120 + workload.events / 500)
    finally:
        report = worker.stop()
    figures = {
        "residents": loaded["reference"]["residents"],
        "role": "decide",
        "sink": sink,
        "produce_seconds": round(produce_s, 1),
        "load_seconds": loaded["seconds"],
        "loaded_rss_mb": kb_to_mb(loaded["vmhwm_kb"]),
        "peak_rss_mb": kb_to_mb((report or {}).get("vmhwm_kb")),
        "processed_events": workload.events,
    }
    log.info("rss: %s", figures)
    return figures


# --- the run ---------------------------------------------------------------------------------


def _phase(errors: dict[str, str], name: str, results: dict[str, Any], key: str, fn: Any) -> None:
    """Run one phase; a failure is recorded (and logged) and the run goes on."""
    log.info("phase %s", name)
    try:
        with phase(f"基准 bench: {name}"):
            results[key] = fn()
    except Exception as err:
        log.exception("bench phase %s failed", name)
        errors[name] = f"{type(err).__name__}: {err}"


def run_bench(config: BenchConfig) -> tuple[dict[str, Any], Path]:
    """Run every phase the config asks for; write JSON + PNG; return (results, JSON path)."""
    results: dict[str, Any] = {"pipeline": {}}
    errors: dict[str, str] = {}
    with _services(config) as run:
        results["meta"] = {
            "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "kafka": run.broker.bootstrap,
            "clickhouse_server": run.server.version if run.server else None,
            "config": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
            },
        }
        with phase(f"基准 bench: prefill {config.events:,} events"):
            workload = prefill(
                run.base,
                run.codec,
                events=config.events,
                communities=config.communities,
                residents=config.residents_per_community,
                seed=config.seed,
            )
        event_topics = [getattr(run.base.topics, f) for f in EVENT_TOPICS]
        ends = end_offsets(run.broker.bootstrap, event_topics)
        expected = sum(ends.values())
        results["workload"] = {
            "events": expected,
            "by_record": workload.by_record,
        }
        out_dir = config.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        if config.edge_only:
            _phase(errors, "edge", results, "edge", lambda: _edge(run, workload))
            run.skipped.append("every phase but the edge (--edge-only)")
            return _write_results(run, results, errors)
        _phase(
            errors,
            "ceilings",
            results,
            "ceilings",
            lambda: measure_ceilings(run.base, run.codec, expected),
        )
        results.update(results.pop("ceilings", {}))
        profile = out_dir / f"bench-{run.stamp}-profile" if config.profile else None
        decided: dict[str, Settings] = {}
        if not config.skip_decide:

            def decide_phase() -> dict[str, Any]:
                figures, decided["settings"] = _decide(run, ends, expected)
                return figures

            _phase(errors, "decide", results, "decide", decide_phase)
        else:
            run.skipped.append("decide (--skip-decide)")
        if config.skip_sink:
            run.skipped.append("sink (--skip-sink)")
        elif "settings" not in decided:
            run.skipped.append("sink (no decide phase to read from)")
        else:
            results["sink"] = {}
            _phase(
                errors,
                "sink chdb",
                results["sink"],
                "chdb",
                lambda: _sink(run, decided["settings"], "chdb", run.chdb_url("sink")),
            )
            if run.server is not None:
                _phase(
                    errors,
                    "sink server",
                    results["sink"],
                    "server",
                    lambda: _sink(run, decided["settings"], "server", run.server_url()),
                )
        if profile is not None and "settings" in decided:
            # a second decide pass under pyinstrument: the figures above stay unprofiled
            _phase(
                errors,
                "decide profiled",
                results,
                "decide_profiled",
                lambda: _decide(run, ends, expected, profile)[0],
            )
            results["profile"] = {"text": f"{profile}.txt", "html": f"{profile}.html"}
        if not config.skip_restore:
            _phase(
                errors, "restore", results, "restore", lambda: _restore(run, config.restore_keys)
            )
        else:
            run.skipped.append("restore (--skip-restore)")
        _phase(
            errors,
            "pipeline chdb",
            results["pipeline"],
            "chdb",
            lambda: _pipeline(
                run,
                "chdb",
                [run.fresh(clickhouse_url=run.chdb_url("pipe"))],
                ends,
                expected,
            ),
        )
        if run.server is not None:
            _phase(
                errors,
                "pipeline server",
                results["pipeline"],
                "server",
                lambda: _pipeline(
                    run, "server", [run.fresh(clickhouse_url=run.server_url())], ends, expected
                ),
            )
        else:
            run.skipped.append("pipeline server (--skip-server)")
        if not config.skip_two_workers:
            _phase(
                errors,
                "two workers",
                results,
                "two_workers",
                lambda: _two_workers(run, ends, expected, results),
            )
        else:
            run.skipped.append("two workers")
        if not config.skip_latency:
            _phase(errors, "latency", results, "latency_run", lambda: _latency(run, workload))
            results["latency"] = results.get("latency_run", {}).get("loads", [])
        else:
            run.skipped.append("latency (--skip-latency)")
        if not config.skip_rss:
            results["rss"] = []
            for n in config.rss_residents:
                _phase(
                    errors,
                    f"rss {n}",
                    results,
                    f"rss_{n}",
                    lambda n=n: _rss(run, workload, ends, n),
                )
                if f"rss_{n}" in results:
                    results["rss"].append(results.pop(f"rss_{n}"))
        else:
            run.skipped.append("rss (--skip-rss)")
        if len(config.worker_gc) > 1:
            _phase(
                errors,
                "gc",
                results,
                "gc_experiment",
                lambda: _gc_experiment(run, workload, ends, expected),
            )
        if not config.skip_edge:
            _phase(errors, "edge", results, "edge", lambda: _edge(run, workload))
        else:
            run.skipped.append("edge (--skip-edge)")
        return _write_results(run, results, errors)


def _write_results(
    run: _Run, results: dict[str, Any], errors: dict[str, str]
) -> tuple[dict[str, Any], Path]:
    """Skipped phases, errors and ratios into the results; the JSON and the chart written."""
    out_dir = run.config.out_dir
    results["skipped"] = run.skipped
    results["errors"] = errors
    add_ratios(results)
    json_path = out_dir / f"bench-{run.stamp}.json"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    chart = render_chart(results, out_dir / f"bench-{run.stamp}.png")
    results["chart"] = str(chart)
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return results, json_path


def _two_workers(
    run: _Run, ends: dict[TopicPartition, int], expected: int, results: dict[str, Any]
) -> dict[str, Any]:
    """Two worker processes in one consumer group (the server when it runs, else one chdb
    directory each), against one worker on the same kind of sink."""
    sink, url = run.sink_url("two-a")
    one = run.fresh(clickhouse_url=url)
    if sink == "server":
        pair = [one, one]
        writer = open_writer(url)  # migrate once, so the two workers do not race to
        try:
            migrate(writer, retention_days=one.retention_days)
        finally:
            writer.close()
    else:
        pair = [one, one.replace(clickhouse_url=run.chdb_url("two-b"))]
    figures = _pipeline(run, "two-workers", pair, ends, expected)
    single = (results.get("pipeline", {}).get(sink) or {}).get("events_per_s")
    figures["sink"] = sink
    figures["speedup_vs_one"] = ratio(figures["events_per_s"], single)
    return figures


def _gc_experiment(
    run: _Run, workload: Workload, ends: dict[TopicPartition, int], expected: int
) -> dict[str, Any]:
    """Each collector setup in turn (in the order given, repeats allowed): the chdb pipeline,
    then latency (unless skipped), each on a fresh group (and fresh latency topics)."""
    out: dict[str, Any] = {}
    for label in gc_labels(run.config.worker_gc):
        mode = label.split()[0]
        figures: dict[str, Any] = {
            "pipeline": _pipeline(
                run,
                f"gc-{label.replace(' #', '-')}",
                [run.fresh(clickhouse_url=run.chdb_url(f"gc-{label.replace(' #', '-')}"))],
                ends,
                expected,
                gc_mode=mode,
            )
        }
        if not run.config.skip_latency:
            prefix = f"lat-{label.replace(' #', '-')}."
            figures["latency"] = _latency(run, workload, prefix=prefix, gc_mode=mode)
        out[label] = figures
    return out


def gc_labels(modes: Sequence[str]) -> list[str]:
    """One label per run of the gc phase: the mode, then ``mode #2``… when it repeats (a
    repeated, alternating list such as default,freeze,default,freeze evens out machine load)."""
    seen: dict[str, int] = {}
    labels = []
    for mode in modes:
        seen[mode] = seen.get(mode, 0) + 1
        labels.append(mode if seen[mode] == 1 else f"{mode} #{seen[mode]}")
    return labels


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Each throughput over the best raw ceiling (the fastest client's consume + Avro read)."""
    best = (results.get("raw_ceiling") or {}).get("best_events_per_s")
    out: dict[str, float | None] = {}
    for client, figures in (results.get("validating_decode") or {}).items():
        out[f"validating_decode_{client}_over_raw_ceiling"] = ratio(
            (figures or {}).get("events_per_s"), best
        )
    for sink, figures in (results.get("pipeline") or {}).items():
        out[f"pipeline_{sink}_over_raw_ceiling"] = ratio((figures or {}).get("events_per_s"), best)
    out["ratio_decide_to_raw_ceiling"] = ratio(
        (results.get("decide") or {}).get("events_per_s"), best
    )
    return out


def add_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Put ``ratios`` and the top-level ``ratio_decide_to_raw_ceiling`` into the results."""
    results["ratios"] = ratios(results)
    results["ratio_decide_to_raw_ceiling"] = results["ratios"]["ratio_decide_to_raw_ceiling"]
    return results


def summary_table(results: dict[str, Any]) -> str:
    """The figures as a plain-text table (中文 / English labels)."""
    lines = ["防线 benchmark 基准测试", "-" * 64]

    def row(label: str, value: Any) -> None:
        lines.append(f"{label:<44} {value if value is not None else '—'}")

    row("events 事件数", (results.get("workload") or {}).get("events"))
    raw = results.get("raw_ceiling") or {}

    def per_cpu(figures: dict[str, Any]) -> str:
        return f"{figures.get('events_per_s')} ({figures.get('events_per_cpu_s')} per CPU-s)"

    for client, figures in (results.get("consume_only") or {}).items():
        row(f"consume only 仅消费 {client}, events/s", per_cpu(figures or {}))
    for client in CLIENTS:
        if client in raw:
            row(f"raw ceiling 原始上限 {client}, events/s", per_cpu(raw[client] or {}))
    for client, figures in (results.get("validating_decode") or {}).items():
        row(f"  + validating decode 校验解码 {client}", per_cpu(figures or {}))
    decide = results.get("decide") or {}
    if decide:
        row("decide stage 决策阶段, events/s", decide.get("events_per_s"))
    for sink, figures in (results.get("sink") or {}).items():
        row(f"sink stage 入库阶段 {sink}, rows/s", (figures or {}).get("rows_per_s"))
    restore = results.get("restore") or {}
    if restore:
        row(
            f"restore 状态恢复 {restore.get('keys')} keys, s",
            f"{restore.get('restore_seconds')} ({restore.get('records_per_s')} records/s)",
        )
    for sink, figures in (results.get("pipeline") or {}).items():
        row(f"pipeline 全流程 {sink}, events/s", (figures or {}).get("events_per_s"))
        row(
            f"  sink rows/s while flushing ({sink})",
            (figures or {}).get("sink_rows_per_s_while_flushing"),
        )
    for name, value in (results.get("ratios") or {}).items():
        row(f"ratio 比值 {name}", value)
    two = results.get("two_workers") or {}
    if two:
        row(f"2 workers 双进程 ({two.get('sink')}), events/s", two.get("events_per_s"))
        row("  speedup vs 1 worker", two.get("speedup_vs_one"))
    for load in results.get("latency") or []:
        row(
            f"latency 延迟 @ {load['offered_per_s']:.0f}/s (achieved {load['achieved_per_s']:.0f})",
            f"missing {load['missing']}",
        )
        for clock in ("client", "broker", "decide_lag"):
            figures = load.get(clock) or {}
            row(
                f"  {clock} p50/p95/p99 ms",
                " / ".join(str(figures.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms")),
            )
    for r in results.get("rss") or []:
        row(
            f"peak RSS 峰值内存 {r['residents']} residents, MB",
            f"loaded {r['loaded_rss_mb']}, peak {r['peak_rss_mb']} ({r['sink']})",
        )
    edge = results.get("edge") or {}
    for load in edge.get("loads") or []:
        row(
            f"gate edge 边缘网关 @ {load['offered_per_s']:.0f}/s "
            f"(achieved {load['achieved_per_s']:.0f})",
            f"{load['devices']} devices, {'sustained' if load['sustainable'] else 'NOT sustained'}",
        )
        for clock in ("device", "edge", "decide"):
            figures = load.get(clock) or {}
            row(
                f"  {clock} p50/p95/p99 ms",
                " / ".join(str(figures.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms")),
            )
        row("  fallback share 兜底占比", load.get("fallback_share"))
        row("  edge CPU ms/request 边缘CPU", load.get("edge_cpu_ms_per_request"))
    if edge:
        row("gate edge highest sustainable, requests/s", edge.get("highest_sustainable_per_s"))
        idle = edge.get("idle_cpu_share") or {}
        row(
            "  idle CPU share 空闲CPU edge/decide/broker",
            " / ".join(str(idle.get(k)) for k in ("edge", "decide", "broker")),
        )
    for name, err in (results.get("errors") or {}).items():
        row(f"FAILED 失败 {name}", err)
    if results.get("skipped"):
        row("skipped 跳过", ", ".join(results["skipped"]))
    return "\n".join(lines)
