"""``fangxian worker``: the production Faust worker (``streams/app.py``)."""

from __future__ import annotations

import argparse
import sys

from fangxian.core.settings import Settings


def preflight(settings: Settings) -> None:
    """Before the worker starts: Kafka answers and has its topics, a ClickHouse server answers.
    A failure raises what the CLI's error path explains (exit 5/6/7/8/9), instead of a worker
    that retries in its logs forever."""
    from kafka.errors import UnknownTopicOrPartitionError

    from fangxian.core.kafka_security import kafka_client_kwargs
    from infra.kafka_inspect import describe_topics, open_admin
    from infra.topics import topic_specs
    from sinks import open_writer
    from sinks.base import ServerTarget, parse_url

    admin = open_admin(
        settings.kafka_bootstrap,
        connect_timeout_s=settings.connect_timeout_s,
        client=kafka_client_kwargs(settings),
    )
    try:
        names = [spec.name for spec in topic_specs(settings)]
        missing = [n for n, state in describe_topics(admin, names, ()).items() if not state.exists]
    finally:
        admin.close()
    if missing:
        raise UnknownTopicOrPartitionError(", ".join(missing))
    if not isinstance(parse_url(settings.clickhouse_url), ServerTarget):
        return  # embedded chdb: nothing to reach, and one engine per process (opened later)
    writer = open_writer(settings.clickhouse_url, connect_timeout_s=settings.connect_timeout_s)
    try:
        writer.server_version()
    finally:
        writer.close()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import create_app

    preflight(settings)
    app = create_app(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel]
    app.main()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="the production Faust worker")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=cmd_worker)
