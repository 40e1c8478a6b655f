"""``fangxian worker``: the decide and sink stages, the on-duty dispatcher and the gate edge as
supervised processes (``fangxian/worker.py``); ``--role decide|sink|dispatch|edge`` runs one in
this process."""

from __future__ import annotations

import argparse

from fangxian.core.settings import SettingError, Settings


def preflight(settings: Settings, role: str | None = None) -> None:
    """Before the worker starts: Kafka answers and has its topics (every role needs them).
    A failure raises what the CLI's error path explains (exit 5/6/7), instead of a worker that
    retries in its logs forever.

    ClickHouse is not checked: the decide stage and the dispatcher need only Kafka, so a
    deploy during a ClickHouse outage still decides gate scans; the sink (and the dispatcher's
    ``alert.actions`` writer) waits for ClickHouse and retries, saying so in its log and in
    ``fangxian_sink_waiting_for_clickhouse`` (``sinks.migrate.migrate_when_available``).
    ``fangxian doctor`` checks ClickHouse for a deploy that wants to know first."""
    from kafka.errors import UnknownTopicOrPartitionError

    from fangxian.worker import edge_configured, missing_dispatch_keys

    if role == "edge" or (role is None and edge_configured()):
        preflight_edge(settings)
    if role == "dispatch" and (absent := missing_dispatch_keys(settings)):
        listed = ", ".join(absent)
        raise SettingError(
            absent[0],
            f"{listed} not set: the dispatcher encrypts staff contacts and signs acknowledge "
            "links with them",
            f"未设置 {listed}：派单用它们加密值班人员联系方式、签名确认链接",
        )

    from fangxian.core.kafka_security import kafka_client_kwargs
    from infra.kafka_inspect import describe_topics, open_admin
    from infra.topics import topic_specs

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


def preflight_edge(settings: Settings) -> None:
    """The gate edge needs the pseudonym key and a register that loads: without them it could
    only fail and be restarted forever, so the worker does not start."""
    from fangxian.cli.errors import input_error, setting_error
    from fangxian.edge.register import Register, RegisterError
    from fangxian.edge.service import EdgeConfig

    if not settings.pseudonym_key:
        raise setting_error(
            "FANGXIAN_PSEUDONYM_KEY",
            "未设置：边缘网关在此把证件号、卡号、车牌变成假名",
            "is not set: the edge turns ID numbers, cards and plates into pseudonyms with it",
        )
    config = EdgeConfig.from_env()
    try:
        Register.from_file(config.register_path, config.register_key)
    except RegisterError as err:
        raise input_error(config.register_path, err.message_zh, err.message_en) from err


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.worker import run_worker

    preflight(settings, args.role)  # once, in the supervisor or the single role
    passed = []  # the children read the same environment; flags are passed on as flags
    if args.bootstrap:
        passed += ["--bootstrap", args.bootstrap]
    if args.clickhouse:
        passed += ["--clickhouse", args.clickhouse]
    return run_worker(args.role, settings, passed)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker",
        help="the stream worker: decide, sink, dispatch and the gate edge as supervised processes",
    )
    worker.add_argument(
        "--role",
        choices=["decide", "sink", "dispatch", "edge"],
        help="run one stage in this process (default: each as a supervised child process;"
        " the dispatcher only if FANGXIAN_ROSTER_KEY and FANGXIAN_ACK_LINK_KEY are set, the"
        " gate edge only if FANGXIAN_EDGE_REGISTER is set)",
    )
    worker.set_defaults(func=cmd_worker)
