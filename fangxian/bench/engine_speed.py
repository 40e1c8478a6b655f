"""The rule engine's own speed, without Kafka: ``python -m fangxian.bench.engine_speed``.

Feeds the simulated event mix (``build_simulator``/``simulated_events``) through a fresh
``RuleEngine`` in batches, as the decide stage does: each batch sorted with ``sort_key`` and
run with ``on_events``, then the changelog taken with ``take_changes`` (part of the stage's
cost). Events carry a Kafka timestamp equal to their event time (live traffic).

Time is the thread's CPU time (``time.thread_time``): events per CPU second, robust on a
shared machine.

``--baseline REV`` (repeatable) loads the ``streams`` package as it was at git revision ``REV``
into this process (``git archive`` into a temporary folder, imported with ``streams*`` swapped
out of ``sys.modules`` and back; the shared ``schemas`` and ``fangxian.core`` are today's) and
times it alongside, the engines alternating within each round so all see the same machine load.
An engine without ``on_events`` (before issue 9) is fed per kind with ``on_scans``,
``on_readings``, ``on_reports``. Engines with ``on_events`` are also checked to make the same
decisions and alerts (a digest of them), so a faster engine that changes an output shows.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from fangxian.bench.stats import rate
from fangxian.bench.workload import build_simulator, reference_pairs, simulated_events

REPO_ROOT = Path(__file__).resolve().parents[2]

Pair = tuple[str, dict[str, Any]]
KIND_OF = {"GateScan": "scan", "TemperatureReading": "reading", "HealthReport": "report"}


@dataclass(frozen=True)
class Workload:
    events: list[Pair]
    reference: list[Pair]


@dataclass
class RunResult:
    cpu_s: float
    events: int
    changes: int
    digest: str


def workload(
    *, events: int, communities: int = 10, residents: int = 1000, seed: int = 11
) -> Workload:
    sim = build_simulator(communities=communities, residents=residents, seed=seed)
    return Workload(simulated_events(sim, events), reference_pairs(sim))


def load_streams(revision: str) -> types.ModuleType:
    """``streams.engine`` as it was at git ``revision``, imported into this process."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", revision, "streams"],
        check=True,
        capture_output=True,
    ).stdout
    folder = tempfile.mkdtemp(prefix="engine_speed_")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    saved = {n: m for n, m in sys.modules.items() if n == "streams" or n.startswith("streams.")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("streams.engine")
    finally:
        sys.path.remove(folder)
        for name in [n for n in sys.modules if n == "streams" or n.startswith("streams.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def new_engine(module: types.ModuleType, reference: Sequence[Pair]) -> Any:
    engine = module.RuleEngine()
    upsert = {
        "Resident": engine.upsert_resident,
        "VisitorPass": engine.upsert_pass,
        "Vehicle": engine.upsert_vehicle,
        "CommunityRules": engine.upsert_rules,
    }
    for name, record in reference:
        upsert[name](record)
    return engine


def run_once(module: types.ModuleType, work: Workload, *, batch: int) -> RunResult:
    """One pass of the whole workload through a fresh engine of ``module``."""
    engine = new_engine(module, work.reference)
    pairs = work.events
    batches = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
    digest = hashlib.sha256()
    changes = 0
    if hasattr(engine, "on_events"):
        sort_key = engine.sort_key
        on_events = engine.on_events
        take_changes = getattr(engine, "take_changes", None)
        prepared = [
            [(KIND_OF[name], rec, rec["event_time"]) for name, rec in chunk] for chunk in batches
        ]
        outs = []
        started = time.thread_time()
        for items in prepared:
            items.sort(key=sort_key)
            outs.append(on_events(items))
            if take_changes is not None:
                changes += len(take_changes())
        cpu = time.thread_time() - started
    else:
        split = []
        for chunk in batches:
            by_kind: dict[str, list[dict[str, Any]]] = {"scan": [], "reading": [], "report": []}
            for name, rec in chunk:
                by_kind[KIND_OF[name]].append(rec)
            split.append(by_kind)
        outs = []
        started = time.thread_time()
        for by_kind in split:
            outs.append(engine.on_scans(by_kind["scan"]))
            outs.append(engine.on_readings(by_kind["reading"]))
            outs.append(engine.on_reports(by_kind["report"]))
        cpu = time.thread_time() - started
    for out in outs:
        for d in out.decisions:
            digest.update(json.dumps(d, sort_keys=True).encode())
        for a in out.alerts:
            digest.update(json.dumps(a, sort_keys=True, default=str).encode())
    return RunResult(cpu, len(pairs), changes, digest.hexdigest()[:16])


def compare(
    work: Workload, modules: dict[str, types.ModuleType], *, rounds: int, batch: int
) -> dict[str, dict[str, Any]]:
    """Per label: best and median events per CPU second over ``rounds`` alternating rounds,
    changelog records per run, and the output digest."""
    samples: dict[str, list[float]] = {label: [] for label in modules}
    last: dict[str, RunResult] = {}
    for module in modules.values():  # warm caches (zoneinfo, rules parsing)
        run_once(module, Workload(work.events[: batch * 2], work.reference), batch=batch)
    for _ in range(rounds):
        for label, module in modules.items():
            result = run_once(module, work, batch=batch)
            samples[label].append(rate(result.events, result.cpu_s))
            last[label] = result
    return {
        label: {
            "best": max(values),
            "median": statistics.median(values),
            "changelog_records": last[label].changes,
            "output_digest": last[label].digest,
        }
        for label, values in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fangxian.bench.engine_speed")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--communities", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline", action="append", default=[], help="git revision to time alongside"
    )
    parser.add_argument("--profile", action="store_true", help="pyinstrument one current run")
    args = parser.parse_args(argv)
    work = workload(events=args.events, communities=args.communities)
    modules: dict[str, types.ModuleType] = {}
    for revision in args.baseline:
        modules[f"baseline {revision}"] = load_streams(revision)
    modules["current"] = importlib.import_module("streams.engine")
    if args.profile:
        return _profile(modules["current"], work, args.batch)
    results = compare(work, modules, rounds=args.rounds, batch=args.batch)
    print(
        json.dumps({"events": len(work.events), "batch": args.batch, "engines": results}, indent=2)
    )
    for label, f in results.items():
        print(
            f"{label:<24} {f['best']:>9,.0f} events/CPU-s (median {f['median']:,.0f})"
            f"  changelog records {f['changelog_records']:,}  outputs {f['output_digest']}"
        )
    return 0


def _profile(module: types.ModuleType, work: Workload, batch: int) -> int:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    run: Callable[[], RunResult] = lambda: run_once(module, work, batch=batch)  # noqa: E731
    profiler.start()
    run()
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
