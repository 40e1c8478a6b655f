"""The staff tools' ClickHouse user (``fangxian_staff``): ``fangxian contacts``, ``report`` and
``forget`` work as it — each leaving its audit row — and it is refused DDL, inserts into the
event tables, and any change to or reading of the audit log; each refusal has its control (the
same statement as the admin user works).

Current ClickHouse (chdb 26.x, SQL access control): chdb runs as its ``default`` user, so a
users.xml whose ``default`` has exactly the grants of the production file
(``infra/clickhouse/users.d/fangxian_staff.xml``) makes an embedded session *that* user. The
data directory is migrated and filled by an unrestricted session first.

The Debian 18.16 server (users.xml profiles, no GRANT): what it can express — contacts and
report work, DDL (and with it forget's ``ALTER … DELETE``) is refused, other databases are
refused. It cannot refuse an INSERT into one table of a database and allow it into another
(docs/security.md).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver.errors import ServerException

from fangxian import cli
from infra.clickhouse_server import STAFF_USER, ClickHouseServer
from schemas import contract
from sinks import Connection, SinkError, migrate, open_writer
from sinks.base import ChdbTarget
from sinks.embedded import ChdbWriter
from sinks.readback import read_contract_rows
from tests.integration.pipeline_harness import fresh_example

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_USER = ROOT / "infra" / "clickhouse" / "users.d" / "fangxian_staff.xml"
SUBJECT = "tok-resident-0077-abcdef"
COMMUNITY = "91350100M000100Y43"
STAFF = "staff-li"
QUERY_IS_PROHIBITED = 392  # 18.16 allow_ddl=0
DATABASE_ACCESS_DENIED = 291


def staff_users_xml(production: Path, name: str = "fangxian_staff") -> str:
    """A users.xml whose ``default`` user has the production user's (``name``) grants and
    profile settings (its database is ``fangxian``, as in production)."""
    user = ET.parse(production).getroot().find(f"users/{name}")
    profile = ET.parse(production).getroot().find(f"profiles/{name}")
    assert user is not None and profile is not None
    grants = "".join(f"<query>{q.text}</query>" for q in user.findall("grants/query") if q.text)
    settings = "".join(ET.tostring(s, encoding="unicode") for s in profile)
    return (
        "<clickhouse><profiles><default>"
        + settings
        + "</default></profiles><users><default><password></password>"
        "<networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota>"
        f"<grants>{grants}</grants></default></users><quotas><default/></quotas></clickhouse>"
    )


@dataclass
class Embedded:
    """One chdb data directory, opened either unrestricted (``admin``) or as the staff user."""

    path: Path
    config: Path

    def admin(self) -> ChdbWriter:
        return ChdbWriter(ChdbTarget(str(self.path), "fangxian"))

    def staff(self) -> ChdbWriter:
        # chdb takes clickhouse-local's start-up arguments from the path's query string
        return ChdbWriter(ChdbTarget(f"{self.path}?config-file={self.config}", "fangxian"))


def fill(writer: Connection) -> None:
    """Rows of SUBJECT in the personal-data tables (and through the views, the roll-ups)."""
    scan = fresh_example("GateScan", "resident_qr", subject_id=SUBJECT, community_id=COMMUNITY)
    writer.write("gate_scans", [scan])
    writer.write(
        "gate_decisions",
        [
            fresh_example(
                "GateDecision",
                event_id=scan["event_id"],
                community_id=COMMUNITY,
                subject_id=SUBJECT,
                decided_at=scan["event_time"] + 5,
            )
        ],
    )
    alert = fresh_example("Alert", alert_id=str(uuid.uuid4()), subject_id=SUBJECT)
    alert["created_at"] = alert["event_time"]
    writer.write("alerts", [alert])


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    yield restricted(tmp_path, PRODUCTION_USER, "fangxian_staff")


def restricted(tmp_path: Path, production: Path, name: str) -> Embedded:
    """A migrated, filled chdb data directory whose restricted session is ``name``."""
    config_dir = tmp_path / f"{name}-config"
    config_dir.mkdir()
    (config_dir / "users.xml").write_text(staff_users_xml(production, name), encoding="utf-8")
    config = config_dir / "config.xml"
    config.write_text(
        "<clickhouse><user_directories><users_xml>"
        f"<path>{config_dir / 'users.xml'}</path>"
        "</users_xml></user_directories></clickhouse>",
        encoding="utf-8",
    )
    found = Embedded(tmp_path / "chdb", config)
    admin = found.admin()
    try:
        migrate(admin, retention_days=10_000)
        admin.execute("CREATE TABLE fangxian.scratch (x UInt8) ENGINE = MergeTree ORDER BY x")
        fill(admin)
    finally:
        admin.close()
    return found


def run_as(embedded: Embedded, who: str, work: Callable[[ChdbWriter], Any]) -> Any:
    writer = embedded.staff() if who == "staff" else embedded.admin()
    try:
        return work(writer)
    finally:
        writer.close()


def test_the_embedded_session_is_the_staff_user(embedded: Embedded) -> None:
    grants = run_as(embedded, "staff", lambda w: [r[0] for r in w.query("SHOW GRANTS")])
    assert "GRANT SHOW COLUMNS, INSERT ON fangxian.audit_log TO default" in grants
    assert "REVOKE SELECT ON fangxian.audit_log FROM default" in grants
    assert not any("CREATE" in g or "DROP" in g for g in grants)
    admin = run_as(embedded, "admin", lambda w: [r[0] for r in w.query("SHOW GRANTS")])
    assert admin != grants, "control: without the config the session is unrestricted"


TOOLS = [
    pytest.param(
        ["contacts", SUBJECT, "--from", "2020-01-01T00:00", "--to", "2030-01-01T00:00"],
        "contacts_query",
        id="contacts",
    ),
    pytest.param(
        ["report", "--community", COMMUNITY, "--date", "2026-12-07", "--format", "csv"],
        "report_export",
        id="report",
    ),
    pytest.param(["forget", SUBJECT], "forget", id="forget"),
]


@pytest.mark.parametrize(("argv", "action"), TOOLS)
def test_the_staff_tools_run_as_the_staff_user(
    embedded: Embedded,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    action: str,
) -> None:
    monkeypatch.setenv("FANGXIAN_STAFF_ID", STAFF)
    monkeypatch.setattr("sinks.open_writer", lambda url, **_: embedded.staff())
    assert cli.main(["--clickhouse", "chdb:///unused", *argv]) == 0, capsys.readouterr().err
    capsys.readouterr()

    def check(admin: ChdbWriter) -> None:
        rows = read_contract_rows(admin, "audit_log", final=False)
        assert [(r["actor"], r["action"]) for r in rows] == [(STAFF, action)]
        if action == "forget":  # the subject's rows are gone, the audit of it is not
            ((left,),) = admin.query(
                "SELECT count() FROM fangxian.gate_scans WHERE subject_id = %(s)s",
                {"s": SUBJECT},
            )
            assert left == 0

    run_as(embedded, "admin", check)


def insert_scan(writer: ChdbWriter) -> None:
    writer.write("gate_scans", [fresh_example("GateScan", "resident_qr")])


def insert_alert(writer: ChdbWriter) -> None:
    writer.write("alerts", contract.examples("Alert")[:1])


def statement(sql: str) -> Callable[[ChdbWriter], Any]:
    return lambda writer: writer.query(sql) if sql.startswith("SELECT") else writer.execute(sql)


REFUSED = [
    pytest.param(statement("CREATE TABLE fangxian.copy (x UInt8) ENGINE = Log"), id="CREATE"),
    pytest.param(statement("DROP TABLE fangxian.scratch"), id="DROP"),
    pytest.param(statement("TRUNCATE TABLE fangxian.scratch"), id="TRUNCATE"),
    pytest.param(statement("ALTER TABLE fangxian.scratch ADD COLUMN y UInt8"), id="ALTER ADD"),
    pytest.param(statement("CREATE DATABASE elsewhere"), id="CREATE DATABASE"),
    pytest.param(insert_scan, id="INSERT into gate_scans"),
    pytest.param(insert_alert, id="INSERT into alerts"),
    pytest.param(
        statement("INSERT INTO fangxian.gate_decisions (event_id) SELECT 'forged'"),
        id="INSERT … SELECT into gate_decisions",
    ),
    pytest.param(
        statement("ALTER TABLE fangxian.audit_log DELETE WHERE 1 SETTINGS mutations_sync = 2"),
        id="delete from audit_log",
    ),
    pytest.param(statement("SELECT count() FROM fangxian.audit_log"), id="read audit_log"),
]


@pytest.mark.parametrize("work", REFUSED)
def test_the_staff_user_is_refused_what_the_tools_do_not_need(
    embedded: Embedded, work: Callable[[ChdbWriter], Any]
) -> None:
    with pytest.raises(SinkError) as refused:
        run_as(embedded, "staff", work)
    assert "ACCESS_DENIED" in str(refused.value) or "Not enough privileges" in str(refused.value)
    run_as(embedded, "admin", work)  # control: the same statement as the admin user works


# -- the Debian 18.16 server -------------------------------------------------------------------
@pytest.fixture
def server_database(clickhouse_server: ClickHouseServer) -> Iterator[str]:
    """The app database (the only one the fangxian users may open on 18.16), migrated and
    filled; dropped afterwards."""
    database = clickhouse_server.app_database
    admin = clickhouse_server.client()
    admin.execute(f"DROP DATABASE IF EXISTS {database}")
    admin.execute(f"CREATE DATABASE {database}")
    writer = open_writer(clickhouse_server.url_for(database))
    try:
        migrate(writer, retention_days=10_000)
        fill(writer)
    finally:
        writer.close()
    yield database
    admin.execute(f"DROP DATABASE IF EXISTS {database}")
    admin.disconnect()


@pytest.mark.parametrize(("argv", "action"), TOOLS[:2])
def test_on_18_16_contacts_and_report_run_as_the_staff_user(
    clickhouse_server: ClickHouseServer,
    server_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    action: str,
) -> None:
    monkeypatch.setenv("FANGXIAN_STAFF_ID", STAFF)
    url = clickhouse_server.url_for(server_database, user=STAFF_USER)
    assert cli.main(["--clickhouse", url, *argv]) == 0, capsys.readouterr().err
    capsys.readouterr()
    admin = open_writer(clickhouse_server.url_for(server_database))
    try:
        rows = read_contract_rows(admin, "audit_log", final=False)
    finally:
        admin.close()
    assert [(r["actor"], r["action"]) for r in rows] == [(STAFF, action)]


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        pytest.param(
            "CREATE TABLE {db}.copy (x UInt8) ENGINE = Log", QUERY_IS_PROHIBITED, id="CREATE"
        ),
        pytest.param("DROP TABLE {db}.gate_scans", QUERY_IS_PROHIBITED, id="DROP"),
        pytest.param(
            "ALTER TABLE {db}.gate_scans ADD COLUMN y UInt8", QUERY_IS_PROHIBITED, id="ALTER"
        ),
        pytest.param(
            "ALTER TABLE {db}.audit_log DELETE WHERE 1",
            QUERY_IS_PROHIBITED,
            id="delete from audit_log (and so forget's deletes: 18.16 counts them as DDL)",
        ),
        pytest.param("SET allow_ddl = 1", QUERY_IS_PROHIBITED, id="lift allow_ddl"),
        pytest.param(
            "SELECT count() FROM default.x", DATABASE_ACCESS_DENIED, id="another database"
        ),
    ],
)
def test_on_18_16_the_staff_user_is_refused_ddl(
    clickhouse_server: ClickHouseServer, server_database: str, sql: str, code: int
) -> None:
    admin = clickhouse_server.client()
    try:
        admin.execute("CREATE TABLE IF NOT EXISTS default.x (x UInt8) ENGINE = Log")
    finally:
        admin.disconnect()
    client = clickhouse_server.client(user=STAFF_USER, database=server_database)
    try:
        with pytest.raises(ServerException) as refused:
            client.execute(sql.format(db=server_database))
    finally:
        client.disconnect()
    assert refused.value.code == code
    if not sql.startswith("SET"):  # control: the admin user may
        admin = clickhouse_server.client()
        try:
            admin.execute(sql.format(db=server_database))
        finally:
            admin.disconnect()


# -- the console's user (fangxian_console) ------------------------------------------------------
CONSOLE_USER_FILE = ROOT / "infra" / "clickhouse" / "users.d" / "fangxian_console.xml"


@pytest.fixture
def console_embedded(tmp_path: Path) -> Iterator[Embedded]:
    yield restricted(tmp_path, CONSOLE_USER_FILE, "fangxian_console")


def console_reads(writer: ChdbWriter) -> None:
    """What the console's pages read, all of it."""
    from fangxian.console.history import History, audit_page

    history = History(writer, "Asia/Shanghai")
    assert history.alerts_since([COMMUNITY], 0), "the filled alert is read back"
    history.actions_since([COMMUNITY], 0)
    history.recent_decisions(COMMUNITY, 0)
    history.decisions_by_gate(COMMUNITY, 0)
    history.occupancy([COMMUNITY], 0)
    history.devices(COMMUNITY, 0)
    audit_page(writer, actor=STAFF)


def console_audits(writer: ChdbWriter) -> None:
    from sinks.audit import SIGN_IN, AuditEntry, write_audit

    write_audit(writer, AuditEntry(actor=STAFF, action=SIGN_IN, origin="console@127.0.0.1"))


CONSOLE_MAY = [
    pytest.param(console_reads, id="every page's reads"),
    pytest.param(console_audits, id="its audit row"),
]


@pytest.mark.parametrize("work", CONSOLE_MAY)
def test_the_console_user_may_what_its_pages_do(
    console_embedded: Embedded, work: Callable[[ChdbWriter], Any]
) -> None:
    run_as(console_embedded, "staff", work)


CONSOLE_REFUSED = [
    pytest.param(insert_scan, id="INSERT into gate_scans"),
    pytest.param(insert_alert, id="INSERT into alerts"),
    pytest.param(
        statement("ALTER TABLE fangxian.gate_scans DELETE WHERE 1 SETTINGS mutations_sync = 2"),
        id="delete personal data",
    ),
    pytest.param(
        statement("ALTER TABLE fangxian.audit_log DELETE WHERE 1 SETTINGS mutations_sync = 2"),
        id="delete from audit_log",
    ),
    pytest.param(statement("CREATE TABLE fangxian.copy (x UInt8) ENGINE = Log"), id="CREATE"),
    pytest.param(statement("DROP TABLE fangxian.scratch"), id="DROP"),
    pytest.param(statement("CREATE DATABASE elsewhere"), id="CREATE DATABASE"),
]


@pytest.mark.parametrize("work", CONSOLE_REFUSED)
def test_the_console_user_is_refused_what_its_pages_do_not_need(
    console_embedded: Embedded, work: Callable[[ChdbWriter], Any]
) -> None:
    with pytest.raises(SinkError) as refused:
        run_as(console_embedded, "staff", work)
    assert "ACCESS_DENIED" in str(refused.value) or "Not enough privileges" in str(refused.value)
    run_as(console_embedded, "admin", work)  # control: the same statement as the admin user works
