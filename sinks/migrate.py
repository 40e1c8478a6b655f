"""Versioned schema migrations: ``sinks/migrations/NNNN_name.sql``, applied in order, once.

Applied versions are recorded in ``<database>.schema_migrations``; running ``migrate`` again
applies nothing. Each statement is ``CREATE ... IF NOT EXISTS``, so a run interrupted halfway is
simply re-run. On a cluster (a writer opened with ``cluster=``) each statement becomes its
replicated and ``Distributed`` forms ``ON CLUSTER`` first (``sinks/cluster.py``); on an old
server each statement then goes through ``adapt_for_legacy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fangxian.core.progress import Progress
from sinks.base import Connection
from sinks.cluster import adapt_for_cluster, cluster_of, replicated_everywhere
from sinks.errors import SinkUnavailable
from sinks.legacy import adapt_for_legacy

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# TTL compares toDateTime(event_time) + retention, and DateTime ends in 2106: a longer retention
# would wrap around and expire every row on insert.
MAX_RETENTION_DAYS = 20_000

BOOKKEEPING_DDL = """\
CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
ORDER BY version"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name without .sql, e.g. "0001_events"
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in ``directory``, by version. Two files with one version is a bug."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        version = int(match["version"])
        if version in found:
            raise ValueError(f"two migrations with version {version}: {path.name}")
        found[version] = Migration(version, path.stem, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: ``--`` comment lines dropped, split at ``;`` that ends a
    line (our DDL has no semicolons inside literals)."""
    lines = [line for line in sql.split("\n") if not line.lstrip().startswith("--")]
    parts = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


def check_database_name(database: str) -> str:
    if not _IDENTIFIER.match(database):
        raise ValueError(f"not a plain database name: {database!r}")
    return database


def render(sql: str, *, database: str, retention_days: int) -> str:
    """Fill the ``{database}`` and ``{retention_days}`` placeholders."""
    check_database_name(database)
    if not 1 <= retention_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention_days must be 1..{MAX_RETENTION_DAYS}, got {retention_days}")
    return sql.replace("{database}", database).replace("{retention_days}", str(retention_days))


def pending_migrations(writer: Connection, database: str | None = None) -> list[Migration]:
    """The migrations not yet applied to ``database`` (all of them before the first run).
    Raises ``SinkError`` (code 81) when the database does not exist."""
    database = check_database_name(database or writer.database)
    tables = writer.query(
        "SELECT name FROM system.tables WHERE database = %(db)s AND name = 'schema_migrations'",
        {"db": database},
    )
    done = applied_versions(writer, database) if tables else set()
    return [m for m in load_migrations() if m.version not in done]


def applied_versions(writer: Connection, database: str) -> set[int]:
    rows = writer.query(f"SELECT version FROM {database}.schema_migrations")
    return {int(row[0]) for row in rows}


def _all_applied(writer: Connection, database: str, migrations: list[Migration]) -> bool:
    tables = writer.query(
        "SELECT name FROM system.tables WHERE database = %(db)s AND name = 'schema_migrations'",
        {"db": database},
    )
    if not tables:
        return False
    return {m.version for m in migrations} <= applied_versions(writer, database)


def migrate(
    writer: Connection,
    *,
    retention_days: int = 90,
    database: str | None = None,
    migrations: list[Migration] | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Apply pending migrations to ``database`` (default: the writer's); return their names.
    ``progress`` counts the pending migrations as they are applied."""
    database = check_database_name(database or writer.database)
    version = writer.server_version()
    migrations = load_migrations() if migrations is None else migrations
    cluster = cluster_of(writer)
    if cluster and _all_applied(writer, database, migrations):
        # nothing to do, so no ON CLUSTER statement either: each waits for every node, and a
        # sink restarting while one replica is down must not wait for it
        return []

    def run(sql: str, *, everywhere: bool = False) -> None:
        statement = render(sql, database=database, retention_days=retention_days)
        if not cluster:
            statements = [statement]
        elif everywhere:
            statements = [replicated_everywhere(statement, cluster=cluster, database=database)]
        else:
            statements = adapt_for_cluster(
                statement,
                cluster=cluster,
                database=database,
                shard_by=getattr(writer, "shard_by", "community"),
            )
        for each in statements:
            writer.execute(adapt_for_legacy(each, version))

    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    writer.execute(f"CREATE DATABASE IF NOT EXISTS {database}{on_cluster}")
    run(BOOKKEEPING_DDL, everywhere=True)
    done = applied_versions(writer, database)
    pending = [m for m in migrations if m.version not in done]
    if progress is not None:
        progress.set_total(len(pending))
    applied: list[str] = []
    for migration in pending:
        log.info("applying migration %s to %s", migration.name, database)
        for statement in split_statements(migration.sql):
            run(statement)
        # INSERT ... SELECT, not VALUES: over the native protocol VALUES waits for data blocks.
        writer.execute(
            f"INSERT INTO {database}.schema_migrations (version, name) "
            f"SELECT {migration.version}, '{migration.name}'"
        )
        applied.append(migration.name)
        if progress is not None:
            progress.advance()
    forget = getattr(writer, "forget_schema", None)
    if applied and callable(forget):
        forget()
    return applied


async def migrate_when_available(
    writer: Connection,
    *,
    retention_days: int = 90,
    who: str = "sink",
    on_available: Callable[[bool], None] | None = None,
    stopping: asyncio.Event | None = None,
    first_backoff_s: float = 1.0,
    max_backoff_s: float = 10.0,
    remind_every_s: float = 60.0,
) -> list[str] | None:
    """``migrate``, waiting for ClickHouse as long as it takes: while the server is unreachable
    (``SinkUnavailable``) try again with a back-off (``first_backoff_s`` doubling to
    ``max_backoff_s``). Says so once at WARNING (zh-CN first, English beside), then a reminder
    at most every ``remind_every_s``, and once more when the server answers.
    ``on_available(False)`` on every failed try, ``(True)`` when migrated (a gauge).

    Returns the migrations applied, or ``None`` when ``stopping`` was set first. Any other
    ``SinkError`` (a refused user, our own SQL) is not an outage and is raised."""
    loop = asyncio.get_running_loop()
    stopping = stopping or asyncio.Event()
    backoff = first_backoff_s
    began = time.monotonic()
    attempts = 0
    reminded = 0.0
    while not stopping.is_set():
        attempts += 1
        try:
            applied = await loop.run_in_executor(
                None, lambda: migrate(writer, retention_days=retention_days)
            )
        except SinkUnavailable as err:
            if on_available is not None:
                on_available(False)
            now = time.monotonic()
            cause = str(err).splitlines()[0] if str(err) else type(err).__name__
            if attempts == 1:
                log.warning(
                    "ClickHouse 不可用，%s等待重试 / ClickHouse unavailable, %s waiting: %s",
                    _WHO_ZH.get(who, who),
                    who,
                    cause,
                )
                reminded = now
            elif now - reminded >= remind_every_s:
                log.warning(
                    "ClickHouse 仍不可用（已等待 %.0f 秒，%d 次），%s继续等待 / ClickHouse still "
                    "unavailable after %.0f s (%d tries), %s waiting: %s",
                    now - began,
                    attempts,
                    _WHO_ZH.get(who, who),
                    now - began,
                    attempts,
                    who,
                    cause,
                )
                reminded = now
            else:
                log.debug("ClickHouse unavailable (try %d): %s", attempts, cause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if on_available is not None:
            on_available(True)
        if attempts > 1:
            log.warning(
                "ClickHouse 已可用（等待 %.0f 秒），%s开始写入 / ClickHouse available after %.0f s,"
                " %s starting; migrations applied: %s",
                time.monotonic() - began,
                _WHO_ZH.get(who, who),
                time.monotonic() - began,
                who,
                ", ".join(applied) or "none",
            )
        return applied
    return None


#: what waits, as the staff-facing log line names it
_WHO_ZH = {"sink": "写入阶段", "dispatch actions": "派单动作写入"}
