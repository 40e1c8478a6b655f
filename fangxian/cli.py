"""The ``fangxian`` command line. Settings come from the environment (``FANGXIAN_*``) once,
here, and are passed down; flags override them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fangxian.core.settings import Settings

log = logging.getLogger("fangxian")

Command = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    changes = {}
    if getattr(args, "bootstrap", None):
        changes["kafka_bootstrap"] = args.bootstrap
    if getattr(args, "clickhouse", None):
        changes["clickhouse_url"] = args.clickhouse
    return settings.replace(**changes) if changes else settings


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from infra.topics import create_topics, topic_specs

    created = create_topics(settings.kafka_bootstrap, topic_specs(settings))
    print(f"topics ready 主题已就绪: {', '.join(created) or '(all existed)'}")
    return 0


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import migrate, open_writer

    writer = open_writer(settings.clickhouse_url)
    try:
        applied = migrate(writer, retention_days=settings.retention_days)
    finally:
        writer.close()
    print(f"migrations applied 已执行迁移: {', '.join(applied) or '(none pending)'}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import create_app

    app = create_app(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel]
    app.main()
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.demo import run_demo

    return run_demo(
        settings,
        duration_s=args.duration,
        rate=args.rate,
        seed=args.seed,
        communities=args.communities,
        residents=args.residents,
    )


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.demo import simulate_to_kafka

    sent = simulate_to_kafka(
        settings,
        communities=args.communities,
        residents=args.residents,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        with_reference=not args.no_reference,
    )
    print(f"produced 已发送 {sent} records")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fangxian", description="防线 fangxian — community epidemic-prevention streaming core"
    )
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (FANGXIAN_KAFKA_BOOTSTRAP)")
    p.add_argument("--clickhouse", help="clickhouse://… or chdb://path (FANGXIAN_CLICKHOUSE_URL)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="embedded demo: Tansu broker + worker + chdb + simulator")
    run.add_argument("--duration", type=float, default=0, help="seconds (0 = until Ctrl-C)")
    run.add_argument("--rate", type=float, default=800.0, help="events per second (wall clock)")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--communities", type=int, default=2)
    run.add_argument("--residents", type=int, default=300)
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="the production Faust worker")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=cmd_worker)

    topics = sub.add_parser("topics", help="Kafka topics").add_subparsers(dest="sub", required=True)
    topics.add_parser("create", help="create every topic (idempotent)").set_defaults(
        func=cmd_topics_create
    )

    db = sub.add_parser("db", help="ClickHouse schema").add_subparsers(dest="sub", required=True)
    db.add_parser("migrate", help="apply pending migrations (idempotent)").set_defaults(
        func=cmd_db_migrate
    )

    sim = sub.add_parser("simulate", help="produce a simulated community to Kafka")
    sim.add_argument("--communities", type=int, default=2)
    sim.add_argument("--residents", type=int, default=400)
    sim.add_argument("--rate", type=float, default=500.0)
    sim.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--no-reference", action="store_true", help="events only")
    sim.set_defaults(func=cmd_simulate)

    _add_more_commands(sub)
    return p


def _add_more_commands(sub: argparse._SubParsersAction) -> None:
    """Commands defined in their own modules (reference loading, reports, benchmark)."""
    from fangxian import commands
    from fangxian.bench import add_bench_command
    from fangxian.dispatching import add_dispatch_command
    from fangxian.loading import add_load_command

    commands.register(sub)
    add_dispatch_command(sub)
    add_load_command(sub)
    add_bench_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka"):  # client chatter; their warnings still show
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    func: Command = args.func
    return func(args, _settings(args))


if __name__ == "__main__":
    raise SystemExit(main())
