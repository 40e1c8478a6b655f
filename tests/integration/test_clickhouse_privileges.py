"""ClickHouse users with the least they need, on the Debian 18.16 server (users.xml profiles and
``allow_databases``: 18.16 has no SQL access control).

The migrations run as ``fangxian_migrate``, the real writer inserts every contract example as
``fangxian_sink``; then each forbidden statement is refused with the error that names the rule,
and each refusal has its control (the same statement as the admin ``default`` user works, or
the allowed neighbour of the statement works for the same user).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_driver.errors import ServerException

from infra.clickhouse_server import BI_READER, MIGRATE_USER, SINK_USER, ClickHouseServer
from schemas import contract
from sinks import migrate, open_writer

READONLY = 164  # "Cannot execute query in readonly mode"
QUERY_IS_PROHIBITED = 392  # allow_ddl=0
DATABASE_ACCESS_DENIED = 291
UNKNOWN_TABLE = 60
WRONG_PASSWORD = 193


@pytest.fixture
def app_database(clickhouse_server: ClickHouseServer) -> Iterator[str]:
    """The app database, migrated by the migration user and holding the contract examples
    written by the sink user; dropped afterwards (by the admin user)."""
    database = clickhouse_server.app_database
    admin = clickhouse_server.client()
    try:  # as the image's CLICKHOUSE_DB does in production: the database exists beforehand
        admin.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    finally:
        admin.disconnect()
    writer = open_writer(clickhouse_server.url_for(database, user=MIGRATE_USER))
    try:
        migrate(writer, retention_days=10_000)
    finally:
        writer.close()
    sink = open_writer(clickhouse_server.url_for(database, user=SINK_USER))
    try:
        assert sink.write("gate_decisions", contract.examples("GateDecision")) == 2
    finally:
        sink.close()
    yield database
    admin = clickhouse_server.client()
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.execute("DROP DATABASE IF EXISTS fangxian_other")
    finally:
        admin.disconnect()


def run_as(server: ClickHouseServer, user: str, sql: str, password: str | None = None) -> object:
    client = server.client(user=user, database=server.app_database, password=password)
    try:
        return client.execute(sql)
    finally:
        client.disconnect()


def refused(server: ClickHouseServer, user: str, sql: str) -> int:
    with pytest.raises(ServerException) as raised:
        run_as(server, user, sql)
    return int(raised.value.code)


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        pytest.param(
            "INSERT INTO {db}.gate_decisions (event_id) SELECT 'forged'",
            READONLY,
            id="bi_reader cannot INSERT",
        ),
        pytest.param(
            "ALTER TABLE {db}.gate_decisions ADD COLUMN x UInt8",
            READONLY,
            id="bi_reader cannot ALTER",
        ),
        pytest.param(
            "ALTER TABLE {db}.gate_decisions DELETE WHERE 1",
            READONLY,
            id="bi_reader cannot delete rows",
        ),
        pytest.param("DROP TABLE {db}.gate_decisions", READONLY, id="bi_reader cannot DROP"),
        pytest.param("SET readonly = 0", READONLY, id="bi_reader cannot lift readonly"),
    ],
)
def test_bi_reader_only_reads(
    clickhouse_server: ClickHouseServer, app_database: str, sql: str, code: int
) -> None:
    assert refused(clickhouse_server, BI_READER, sql.format(db=app_database)) == code
    [(rows,)] = run_as(
        clickhouse_server, BI_READER, f"SELECT count() FROM {app_database}.gate_decisions"
    )
    assert rows == 2, "control: bi_reader reads the table it cannot change"


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        pytest.param("DROP TABLE {db}.gate_decisions", QUERY_IS_PROHIBITED, id="sink cannot DROP"),
        pytest.param(
            "TRUNCATE TABLE {db}.gate_decisions", QUERY_IS_PROHIBITED, id="sink cannot TRUNCATE"
        ),
        pytest.param(
            "ALTER TABLE {db}.gate_decisions DELETE WHERE 1",
            QUERY_IS_PROHIBITED,
            id="sink cannot delete rows",
        ),
        pytest.param(
            "ALTER TABLE {db}.gate_decisions ADD COLUMN x UInt8",
            QUERY_IS_PROHIBITED,
            id="sink cannot ALTER",
        ),
        pytest.param(
            "CREATE TABLE {db}.copy (x UInt8) ENGINE = Log",
            QUERY_IS_PROHIBITED,
            id="sink cannot CREATE",
        ),
        pytest.param("SET allow_ddl = 1", QUERY_IS_PROHIBITED, id="sink cannot lift allow_ddl"),
        pytest.param(
            "SELECT count() FROM fangxian_other.t",
            DATABASE_ACCESS_DENIED,
            id="sink cannot read another database",
        ),
        pytest.param(
            "INSERT INTO fangxian_other.t SELECT 1",
            DATABASE_ACCESS_DENIED,
            id="sink cannot insert into another database",
        ),
        pytest.param(
            "SELECT * FROM system.users",
            UNKNOWN_TABLE,
            id="sink cannot read system.users (18.16 has none)",
        ),
    ],
)
def test_sink_user_only_inserts_into_the_app_database(
    clickhouse_server: ClickHouseServer, app_database: str, sql: str, code: int
) -> None:
    admin = clickhouse_server.client()
    try:
        admin.execute("CREATE DATABASE IF NOT EXISTS fangxian_other")
        admin.execute("CREATE TABLE IF NOT EXISTS fangxian_other.t (x UInt8) ENGINE = Log")
    finally:
        admin.disconnect()
    assert refused(clickhouse_server, SINK_USER, sql.format(db=app_database)) == code
    run_as(  # control: the sink user inserts into the app database
        clickhouse_server,
        SINK_USER,
        f"INSERT INTO {app_database}.gate_decisions (event_id) SELECT 'control'",
    )


def test_a_sink_that_sets_allow_ddl_in_the_same_session_still_cannot_drop(
    clickhouse_server: ClickHouseServer, app_database: str
) -> None:
    client = clickhouse_server.client(user=SINK_USER, database=app_database)
    try:
        with pytest.raises(ServerException):
            client.execute("SET allow_ddl = 1")
        with pytest.raises(ServerException) as raised:
            client.execute(f"DROP TABLE {app_database}.gate_decisions")
    finally:
        client.disconnect()
    assert raised.value.code == QUERY_IS_PROHIBITED


def test_sink_sees_only_its_own_database(
    clickhouse_server: ClickHouseServer, app_database: str
) -> None:
    """The closest 18.16 has to hiding system.users from it: other databases do not appear."""
    admin = clickhouse_server.client()
    try:
        admin.execute("CREATE DATABASE IF NOT EXISTS fangxian_other")
    finally:
        admin.disconnect()
    names = {row[0] for row in run_as(clickhouse_server, SINK_USER, "SHOW DATABASES")}
    assert app_database in names
    assert "fangxian_other" not in names
    admin_names = {row[0] for row in run_as(clickhouse_server, "default", "SHOW DATABASES")}
    assert "fangxian_other" in admin_names, "control: the database exists"


def test_migration_user_changes_only_the_app_database(
    clickhouse_server: ClickHouseServer, app_database: str
) -> None:
    run_as(
        clickhouse_server,
        MIGRATE_USER,
        f"ALTER TABLE {app_database}.gate_decisions ADD COLUMN probe UInt8",
    )
    assert (
        refused(clickhouse_server, MIGRATE_USER, "CREATE DATABASE fangxian_elsewhere")
        == DATABASE_ACCESS_DENIED
    )


@pytest.mark.parametrize(
    "user", [pytest.param(SINK_USER, id="sink"), pytest.param(MIGRATE_USER, id="migrate")]
)
def test_fangxian_users_need_their_password(
    clickhouse_server: ClickHouseServer, app_database: str, user: str
) -> None:
    with pytest.raises(ServerException) as raised:
        run_as(clickhouse_server, user, "SELECT 1", password="wrong")
    assert raised.value.code == WRONG_PASSWORD
    assert run_as(clickhouse_server, user, "SELECT 1") == [(1,)]
