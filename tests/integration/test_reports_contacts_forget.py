"""Contacts on a known trajectory and ``forget`` on both backends (chdb, the 18.16 server)."""

from __future__ import annotations

import json

import pytest
from test_reports_scenario import (
    COMMUNITY_A,
    DAY,
    DAY_END,
    DAY_START,
    KNOWN_CONTACTS,
    RETENTION_DAYS,
    SUBJECT,
    TIMEZONE,
    WINDOW_MS,
    Scenario,
    build_scenario,
    db_fixture,  # noqa: F401  (the ``db`` fixture)
    expected_contacts,
    expected_report,
    token,
    write_scenario,
)

from fangxian import cli
from fangxian.core.privacy import mask_token
from fangxian.reporting.contacts import find_contacts, render_json, render_table
from fangxian.reporting.forget import SUBJECT_TABLES, forget_subject
from sinks import Writer, migrate, open_writer
from sinks.reports import Scope, build_report


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build_scenario()


def test_contacts_are_the_passes_within_the_window_at_the_same_gate(
    db: Writer, scenario: Scenario
) -> None:
    write_scenario(db, scenario)
    write_scenario(db, scenario)  # redelivered: still one contact per pass
    result = find_contacts(db, SUBJECT, DAY_START, DAY_END, WINDOW_MS)
    assert [p.event_time for p in result.trajectory] == sorted(
        s["event_time"] for s in scenario.scans if s["subject_id"] == SUBJECT
    )
    found = {(c.subject_id, c.event_time) for c in result.contacts}
    assert found == expected_contacts(scenario, SUBJECT, WINDOW_MS)
    for label, (_, _, t, is_contact) in KNOWN_CONTACTS.items():
        assert ((token(label), t) in found) == is_contact, label


def test_contact_output_is_masked(db: Writer, scenario: Scenario) -> None:
    write_scenario(db, scenario)
    result = find_contacts(db, SUBJECT, DAY_START, DAY_END, WINDOW_MS)
    data = json.loads(render_json(result, TIMEZONE))
    table = render_table(result, TIMEZONE)
    assert data["subject"] == mask_token(SUBJECT)
    assert {c["subject_id"] for c in data["contacts"]} == {
        mask_token(c.subject_id) for c in result.contacts
    }
    for text in (json.dumps(data), table):
        assert SUBJECT not in text
        assert not any(c.subject_id in text for c in result.contacts)


def test_a_narrower_period_drops_the_later_pass(db: Writer, scenario: Scenario) -> None:
    write_scenario(db, scenario)
    noon = DAY_START + 10 * 3_600_000  # 10:00 local: only the 08:00 pass is in range
    result = find_contacts(db, SUBJECT, DAY_START, noon, WINDOW_MS)
    assert len(result.trajectory) == 1
    assert token("second pass +9:59") not in {c.subject_id for c in result.contacts}


def rows_of(db: Writer, subject: str) -> dict[str, int]:
    counts = {}
    for table, condition in SUBJECT_TABLES.items():
        ((n,),) = db.query(
            f"SELECT count() FROM {db.database}.{table} WHERE {condition}", {"subject": subject}
        )
        counts[table] = int(n)
    return counts


def test_forget_leaves_no_row_of_the_subject_and_rebuilds_the_rollups(
    db: Writer, scenario: Scenario
) -> None:
    write_scenario(db, scenario)
    write_scenario(db, scenario)
    before = rows_of(db, SUBJECT)
    assert before["gate_scans"] and before["health_reports"] and before["alerts"]
    result = forget_subject(db, SUBJECT)
    assert result.removed == before
    assert set(rows_of(db, SUBJECT).values()) == {0}
    # the roll-ups now hold the day without the subject, exactly
    without = Scenario(
        **{
            name: [e for e in events if SUBJECT not in (e.get("subject_id"), e.get("resident_id"))]
            for name, events in vars(scenario).items()
        }
    )
    report = build_report(db, Scope("community", COMMUNITY_A), DAY, TIMEZONE)
    expected = expected_report(without, lambda c: c == COMMUNITY_A)
    assert report.figures == expected["figures"]
    assert report.symptoms == expected["symptoms"]
    assert report.decisions == expected["decisions"]
    assert report.passes_by_hour == expected["passes_by_hour"]
    # nobody else lost anything (merges may have collapsed the redelivered copies meanwhile)
    ((left,),) = db.query(f"SELECT count() FROM {db.database}.gate_scans FINAL")
    assert left == len({s["event_id"] for s in without.scans})


def test_forget_dry_run_deletes_nothing(db: Writer, scenario: Scenario) -> None:
    write_scenario(db, scenario)
    before = rows_of(db, SUBJECT)
    assert forget_subject(db, SUBJECT, dry_run=True).removed == before
    assert rows_of(db, SUBJECT) == before


def test_the_forget_command_reports_what_it_removed(
    chdb_url: str, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = open_writer(chdb_url)
    try:
        migrate(opened, retention_days=RETENTION_DAYS)
        write_scenario(opened, scenario)
        expected = sum(rows_of(opened, SUBJECT).values())
    finally:
        opened.close()
    assert cli.main(["--clickhouse", chdb_url, "forget", SUBJECT]) == 0
    out = capsys.readouterr().out
    assert f"removed 已删除 {expected} rows" in out and SUBJECT not in out
