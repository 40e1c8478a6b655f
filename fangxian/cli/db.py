"""``fangxian db migrate``: pending ClickHouse migrations, idempotently (``sinks/migrate.py``)."""

from __future__ import annotations

import argparse

from fangxian.core.progress import Progress
from fangxian.core.settings import Settings


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import clickhouse_options, migrate, open_writer

    writer = open_writer(
        settings.clickhouse_url,
        connect_timeout_s=settings.connect_timeout_s,
        **clickhouse_options(settings),
    )
    try:
        with Progress(
            "迁移 db migrate", unit="migrations", interval_s=settings.progress_interval_s
        ) as progress:
            applied = migrate(writer, retention_days=settings.retention_days, progress=progress)
    finally:
        writer.close()
    print(f"migrations applied 已执行迁移: {', '.join(applied) or '(none pending)'}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="ClickHouse schema").add_subparsers(dest="sub", required=True)
    db.add_parser("migrate", help="apply pending migrations (idempotent)").set_defaults(
        func=cmd_db_migrate
    )
