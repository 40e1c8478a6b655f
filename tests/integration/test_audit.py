"""A staff action on personal data leaves an append-only audit row (who, when, what, from
where), on both backends: chdb (current ClickHouse) and the 18.16 server (legacy DDL)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fangxian import cli
from fangxian.core.privacy import mask_token
from fangxian.reporting.forget import SUBJECT_TABLES
from sinks import migrate, open_writer
from sinks.audit import subject_ref

SUBJECT = "tok-resident-0001-abcdef"
STAFF = "staff-zhang"


@pytest.fixture(
    params=[
        pytest.param("chdb_url", marks=pytest.mark.chdb, id="chdb"),
        pytest.param("clickhouse_url", marks=pytest.mark.clickhouse_server, id="server-18.16"),
    ]
)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    target: str = request.getfixturevalue(request.param)
    writer = open_writer(target)
    try:
        migrate(writer, retention_days=10_000)
    finally:
        writer.close()
    yield target


def audit_rows(url: str) -> list[tuple[str, ...]]:
    reader = open_writer(url)
    try:
        return [
            tuple(str(v) for v in row)
            for row in reader.query(
                f"SELECT actor, action, subject, subject_ref, scope, origin, toUnixTimestamp(at) "
                f"FROM {reader.database}.audit_log ORDER BY action"
            )
        ]
    finally:
        reader.close()


def test_a_contacts_query_leaves_an_audit_row(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FANGXIAN_STAFF_ID", STAFF)
    monkeypatch.setenv("SSH_CLIENT", "10.1.2.3 52814 22")
    assert audit_rows(url) == [], "control: a fresh database has no audit rows"
    before = int(time.time())
    args = ["--clickhouse", url, "contacts", SUBJECT, "--from", "2020-02-10T00:00"]
    assert cli.main([*args, "--to", "2020-02-11T00:00", "--format", "json"]) == 0
    capsys.readouterr()
    [(actor, action, subject, ref, scope, origin, at)] = audit_rows(url)
    assert (actor, action) == (STAFF, "contacts_query")
    assert subject == mask_token(SUBJECT) and SUBJECT not in subject
    assert ref == subject_ref(SUBJECT)
    assert origin.startswith("cli@") and origin.endswith("from 10.1.2.3")
    assert scope == ""
    assert before - 1 <= int(at) <= int(time.time()) + 1


def test_forget_and_report_are_audited_and_forget_keeps_the_audit(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FANGXIAN_STAFF_ID", STAFF)
    args = ["--clickhouse", url, "contacts", SUBJECT, "--from", "2020-02-10T00:00"]
    assert cli.main([*args, "--to", "2020-02-11T00:00"]) == 0
    assert cli.main(["--clickhouse", url, "forget", SUBJECT]) == 0
    community = "91350100M000100Y43"
    report = ["--clickhouse", url, "report", "--community", community, "--date", "2020-02-10"]
    assert cli.main(report) == 0
    capsys.readouterr()
    # 18.16 keeps `at` in whole seconds (plus at_ms): order by action, not time
    rows = {r[1]: r for r in audit_rows(url)}
    assert sorted(rows) == ["contacts_query", "forget", "report_export"]
    assert rows["report_export"][4] == f"community:{community}"
    assert rows["forget"][2] == mask_token(SUBJECT)
    assert "audit_log" not in SUBJECT_TABLES, "forget never deletes the audit of itself"
