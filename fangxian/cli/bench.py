"""``fangxian bench``: the benchmark harness (``fangxian/bench/``, not a test). See
``docs/benchmark.md``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fangxian.core.gctune import MODES as GC_MODES
from fangxian.core.settings import Settings


def _loads(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from err
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"offered loads must be positive: {text!r}")
    return values


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from err
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"counts must be positive: {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from err
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _gc_modes(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [v for v in values if v not in GC_MODES]
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"gc modes are {', '.join(GC_MODES)}: {text!r}")
    return values


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``BenchConfig`` the command line asks for (``--quick`` sets the small defaults,
    explicit options override them)."""
    from fangxian.bench.harness import BenchConfig

    changes: dict[str, Any] = {
        "skip_server": args.skip_server or args.edge_only,
        "skip_latency": args.skip_latency,
        "skip_rss": args.skip_rss,
        "skip_two_workers": args.skip_two_workers,
        "skip_decide": args.skip_decide,
        "skip_sink": args.skip_sink,
        "skip_restore": args.skip_restore,
        "skip_edge": args.skip_edge,
        "edge_only": args.edge_only,
        "profile": args.profile,
        "out_dir": Path(args.out_dir),
    }
    if args.worker_gc is not None:
        changes["worker_gc"] = args.worker_gc
    if args.edge_only and args.events is None:
        changes["events"] = 0  # the reference data is all the edge phase needs
    names = ("events", "loads", "load_seconds", "rss_residents", "seed", "restore_keys")
    for name in (*names, "edge_loads"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    return BenchConfig.quick(**changes) if args.quick else BenchConfig(**changes)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.clickhouse_cluster:
        return _clickhouse_cluster(args)
    from fangxian.bench.harness import run_bench, summary_table

    results, path = run_bench(config_from_args(args))
    print(summary_table(results))
    print(f"results 结果: {path}")
    print(f"chart 图表: {results.get('chart')}")
    if results.get("profile"):
        print(f"profile 性能剖析: {results['profile']['text']}")
    return 1 if results.get("errors") else 0


def _clickhouse_cluster(args: argparse.Namespace) -> int:
    """The sink's inserts into one server and a 2×2 cluster (Distributed / per shard)."""
    from fangxian.bench import clickhouse_cluster

    events = args.events or (50_000 if args.quick else 200_000)
    results, path = clickhouse_cluster.run(
        events=events, rounds=1 if args.quick else 2, out_dir=Path(args.out_dir)
    )
    print(clickhouse_cluster.summary_table(results))
    print(f"results 结果: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``fangxian bench``."""
    bench = subparsers.add_parser(
        "bench",
        help="benchmark harness 基准测试: real Kafka, worker, chdb / ClickHouse server",
        description="Throughput, latency and memory of the pipeline against a Kafka broker "
        "this command starts and stops itself. Figures → bench-results/.",
    )
    bench.add_argument("--quick", action="store_true", help="~20k events, 5 s loads, 100k RSS")
    bench.add_argument("--events", type=int, help="events to prefill (default 200000)")
    bench.add_argument("--loads", type=_loads, help="offered loads, e.g. 1000,5000,20000")
    bench.add_argument("--load-seconds", type=float, help="seconds per offered load (10)")
    bench.add_argument(
        "--rss-residents", type=_counts, help="resident counts for RSS, e.g. 100000,1000000"
    )
    bench.add_argument("--seed", type=int)
    bench.add_argument("--skip-server", action="store_true", help="no ClickHouse server phase")
    bench.add_argument("--skip-latency", action="store_true")
    bench.add_argument("--skip-rss", action="store_true")
    bench.add_argument("--skip-two-workers", action="store_true")
    bench.add_argument(
        "--skip-decide", action="store_true", help="no decide-stage phase (and so no sink phase)"
    )
    bench.add_argument("--skip-sink", action="store_true", help="no sink-stage phase")
    bench.add_argument("--skip-restore", action="store_true", help="no changelog restore phase")
    bench.add_argument(
        "--skip-edge", action="store_true", help="no gate edge phase (devices → edge → decide)"
    )
    bench.add_argument(
        "--edge-only",
        action="store_true",
        help="only the gate edge phase (the reference data prefilled; no ClickHouse)",
    )
    bench.add_argument(
        "--edge-loads", type=_loads, help="edge phase device requests/s (default 200,1000)"
    )
    bench.add_argument(
        "--clickhouse-cluster",
        action="store_true",
        help="only the sink's inserts into one server and a 2 shards × 2 replicas cluster "
        "(ZooKeeper), through Distributed tables and per shard (no Kafka; docs/scale.md)",
    )
    bench.add_argument(
        "--restore-keys",
        type=_positive,
        help="state keys in the restored changelog (default 1000000; --quick 100000)",
    )
    bench.add_argument(
        "--profile", action="store_true", help="pyinstrument profile of the chdb pipeline"
    )
    bench.add_argument(
        "--worker-gc",
        type=_gc_modes,
        help=f"collector setups, e.g. default,freeze ({', '.join(GC_MODES)}); more than one "
        "adds a phase comparing them (repeats allowed)",
    )
    bench.add_argument("--out-dir", default="bench-results")
    bench.set_defaults(func=cmd_bench)
