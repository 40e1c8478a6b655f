"""sinks.migrate without a database: file discovery, statement splitting, placeholders, and the
bookkeeping against a recording fake writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sinks.migrate import (
    MAX_RETENTION_DAYS,
    Migration,
    load_migrations,
    migrate,
    render,
    split_statements,
)


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_the_six_contract_tables_are_created() -> None:
    ddl = "\n".join(m.sql for m in load_migrations())
    for table in (
        "gate_scans",
        "temperature_readings",
        "health_reports",
        "gate_decisions",
        "alerts",
        "dead_letters",
    ):
        assert f"CREATE TABLE IF NOT EXISTS {{database}}.{table}\n" in ddl


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("CREATE A;\nCREATE B;\n", ["CREATE A", "CREATE B"], id="two statements"),
        pytest.param("-- note; with a semicolon\nCREATE A;", ["CREATE A"], id="comments dropped"),
        pytest.param(
            "CREATE A\n(\n  x Enum8('a' = 1)\n);  \n\n",
            ["CREATE A\n(\n  x Enum8('a' = 1)\n)"],
            id="multi-line",
        ),
        pytest.param("CREATE A", ["CREATE A"], id="no final semicolon"),
    ],
)
def test_split_statements(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


@pytest.mark.parametrize(
    ("database", "retention_days"),
    [
        pytest.param("fx; DROP", 90, id="database must be a plain identifier"),
        pytest.param("fx", 0, id="retention of zero days"),
        pytest.param("fx", MAX_RETENTION_DAYS + 1, id="retention past the DateTime range"),
    ],
)
def test_render_rejects(database: str, retention_days: int) -> None:
    with pytest.raises(ValueError):
        render(
            "CREATE {database}.t TTL x + INTERVAL {retention_days} DAY",
            database=database,
            retention_days=retention_days,
        )


def test_render_fills_placeholders() -> None:
    rendered = render("{database}.t INTERVAL {retention_days} DAY", database="fx", retention_days=7)
    assert rendered == "fx.t INTERVAL 7 DAY"


def test_load_migrations_refuses_a_badly_named_file(tmp_path: Path) -> None:
    (tmp_path / "1_events.sql").write_text("CREATE X;")
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)


class RecordingWriter:
    """Remembers statements; answers the bookkeeping query from the INSERTs it saw."""

    database = "fx"

    def __init__(self, version: tuple[int, ...]) -> None:
        self.version = version
        self.statements: list[str] = []
        self.recorded: list[int] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if sql.startswith("INSERT INTO fx.schema_migrations"):
            self.recorded.append(int(sql.split("SELECT ")[1].split(",")[0]))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        assert sql == "SELECT version FROM fx.schema_migrations"
        return [(v,) for v in self.recorded]

    def server_version(self) -> tuple[int, ...]:
        return self.version

    def write(self, table: str, rows: Any) -> int:
        raise AssertionError("migrate never writes rows")

    def close(self) -> None:
        pass


MIGRATIONS = [
    Migration(
        1, "0001_a", "CREATE TABLE IF NOT EXISTS {database}.a\n(\n    t DateTime64(3, 'UTC')\n);"
    ),
    Migration(2, "0002_b", "CREATE TABLE IF NOT EXISTS {database}.b (x Bool);"),
]


def test_migrate_applies_pending_once_and_records_them() -> None:
    writer = RecordingWriter((26, 9))
    assert migrate(writer, migrations=MIGRATIONS) == ["0001_a", "0002_b"]
    assert writer.recorded == [1, 2]
    assert migrate(writer, migrations=MIGRATIONS) == []
    assert writer.recorded == [1, 2]


def test_migrate_picks_up_only_a_new_migration() -> None:
    writer = RecordingWriter((26, 9))
    migrate(writer, migrations=MIGRATIONS[:1])
    assert migrate(writer, migrations=MIGRATIONS) == ["0002_b"]


def test_migrate_adapts_statements_for_an_old_server() -> None:
    writer = RecordingWriter((18, 16, 1))
    migrate(writer, migrations=MIGRATIONS)
    created = [s for s in writer.statements if s.startswith("CREATE TABLE IF NOT EXISTS fx.")]
    assert "fx.a\n(\n    t DateTime('UTC'),\n    t_ms UInt16 DEFAULT 0\n)" in created[1]
    assert created[2].endswith("(x UInt8)")
