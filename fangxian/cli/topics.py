"""``fangxian topics create``: every Kafka topic, idempotently (``infra/topics.py``)."""

from __future__ import annotations

import argparse

from fangxian.core.settings import Settings


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.core.kafka_security import kafka_client_kwargs
    from infra.topics import create_topics, topic_specs

    created = create_topics(
        settings.kafka_bootstrap,
        topic_specs(settings),
        client=kafka_client_kwargs(settings),
        connect_timeout_s=settings.connect_timeout_s,
        wait_for_brokers_s=args.wait_brokers,
    )
    print(
        f"topics ready 主题已就绪 (replication factor {settings.replication_factor}, "
        f"min.insync.replicas {settings.min_insync_replicas}): "
        f"{', '.join(created) or '(all existed)'}"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser("topics", help="Kafka topics").add_subparsers(dest="sub", required=True)
    create = topics.add_parser("create", help="create every topic (idempotent)")
    create.add_argument(
        "--wait-brokers",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for as many brokers as FANGXIAN_REPLICATION_FACTOR "
        "(a cluster still starting) 等待足够的 broker 上线",
    )
    create.set_defaults(func=cmd_topics_create)
