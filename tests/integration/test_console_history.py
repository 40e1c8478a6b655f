"""Every query of the console's ClickHouse side, on chdb and on the 18.16 server, against rows
written through the real Writer: occupancy counts admitted passes only, observation and device
health read the day, alerts come back with their actions, subjects leave masked."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fangxian.console.history import History, audit_page, local_midnight_s, today
from sinks import Connection, migrate, open_writer
from sinks.audit import (
    ALERT_ACK,
    CONTACTS_QUERY,
    REPORT_EXPORT,
    SIGN_IN,
    AuditEntry,
    audit_row,
)
from tests.integration.pipeline_harness import fresh_example, now_ms

TZ = "Asia/Shanghai"
EAST = "91350100M000100Y43"
WEST = "91350100M000200Y4X"


@pytest.fixture(params=["chdb", "server"])
def writer(request: pytest.FixtureRequest) -> Any:
    url = request.getfixturevalue("chdb_url" if request.param == "chdb" else "clickhouse_url")
    conn = open_writer(url)
    migrate(conn)
    yield conn
    conn.close()


def scan(direction: str, subject_type: str = "RESIDENT", **changes: Any) -> dict[str, Any]:
    return fresh_example(
        "GateScan",
        "resident_qr",
        direction=direction,
        subject_type=subject_type,
        subject_id=uuid.uuid4().hex,
        **changes,
    )


def decision_for(row: dict[str, Any], decision: str) -> dict[str, Any]:
    return fresh_example(
        "GateDecision",
        event_id=row["event_id"],
        community_id=row["community_id"],
        gate_id=row["gate_id"],
        subject_id=row["subject_id"],
        decision=decision,
        reasons=[] if decision == "ALLOW" else ["UNKNOWN_SUBJECT"],
        decided_at=row["event_time"] + 5,
    )


def fill(writer: Connection) -> dict[str, Any]:
    scans = [
        (scan("IN"), "ALLOW"),
        (scan("IN", gate_id="west-gate"), "WARN"),
        (scan("IN"), "ALLOW"),
        (scan("OUT"), "ALLOW"),
        (scan("IN"), "DENY"),  # refused: not inside
        (scan("IN", "VEHICLE"), "ALLOW"),  # vehicles are not persons
        (scan("IN", community_id=WEST), "ALLOW"),
    ]
    writer.write("gate_scans", [s for s, _ in scans])
    writer.write("gate_decisions", [decision_for(s, d) for s, d in scans])
    local_today = dt.datetime.now(ZoneInfo(TZ)).date()
    day = (local_today - dt.date(1970, 1, 1)).days
    reported = fresh_example("HealthReport", report_date=day)
    overdue_subject = uuid.uuid4().hex
    alerts = [
        fresh_example("Alert", alert_id=str(uuid.uuid4())),
        fresh_example(
            "Alert",
            alert_id=str(uuid.uuid4()),
            alert_type="REPORT_OVERDUE",
            severity="WARNING",
            subject_id=overdue_subject,
            gate_id=None,
            device_id=None,
        ),
        fresh_example(
            "Alert",
            alert_id=str(uuid.uuid4()),
            alert_type="DEVICE_DRIFT",
            severity="WARNING",
            subject_id=None,
            device_id="ir-east-01",
        ),
        fresh_example("Alert", alert_id=str(uuid.uuid4()), community_id=WEST),
    ]
    for alert in alerts:
        alert["created_at"] = alert["event_time"]
    writer.write("alerts", alerts)
    writer.write("health_reports", [reported])
    writer.write(
        "temperature_readings",
        [fresh_example("TemperatureReading"), fresh_example("TemperatureReading", "handheld")],
    )
    ack = {
        "action_id": str(uuid.uuid4()),
        "alert_id": alerts[0]["alert_id"],
        "community_id": EAST,
        "action": "ACKNOWLEDGED",
        "alert_type": "FEVER_CONFIRMED",
        "severity": "CRITICAL",
        "gate_id": "east-gate",
        "level": 1,
        "staff_ids": ["st-east-day"],
        "channel": None,
        "delivery_id": None,
        "attempt": 0,
        "group_count": 1,
        "detail": {"partition": "1", "via": "console"},
        "alert_event_time": alerts[0]["event_time"],
        "created_at": now_ms(),
    }
    writer.write("alert_actions", [ack])
    return {"alerts": alerts, "reported": reported, "overdue": overdue_subject}


def test_every_console_query(writer: Connection) -> None:
    data = fill(writer)
    history = History(writer, TZ)
    start = local_midnight_s(TZ)

    occupancy = history.occupancy([EAST, WEST], start)
    assert occupancy[EAST] == {"in": 3, "out": 1, "now": 2}  # ALLOW/WARN persons only
    assert occupancy[WEST] == {"in": 1, "out": 0, "now": 1}

    alerts = history.alerts_since([EAST], start)
    assert {a["alert_id"] for a in alerts} == {a["alert_id"] for a in data["alerts"][:3]}
    (action,) = history.actions_since([EAST], start)
    assert action["action"] == "ACKNOWLEDGED" and action["staff_ids"] == ["st-east-day"]
    assert history.alert(data["alerts"][0]["alert_id"])["community_id"] == EAST  # type: ignore[index]
    assert history.alert(str(uuid.uuid4())) is None

    by_gate = history.decisions_by_gate(EAST, start)
    assert by_gate["east-gate"] == {"ALLOW": 4, "DENY": 1}
    assert by_gate["west-gate"] == {"WARN": 1}
    recent = history.recent_decisions(EAST, start)
    assert len(recent) == 6 and all("****" in d["subject"] for d in recent)

    people = {p["resident"]: p for p in history.observation(EAST, today(TZ))}
    token = data["reported"]["resident_id"]
    reported = people[token[:4] + "****" + token[-4:]]
    assert reported["status"] == "REPORTED" and reported["symptoms"] == ["发热", "干咳"]
    overdue = data["overdue"]
    assert people[overdue[:4] + "****" + overdue[-4:]]["status"] == "OVERDUE"

    devices = {d["device_id"]: d for d in history.devices(EAST, start)}
    assert devices["ir-east-01"]["events"] == 1
    assert [a["alert_type"] for a in devices["ir-east-01"]["alerts"]] == ["DEVICE_DRIFT"]
    assert devices["gun-east-03"]["kind"] == "thermometer"
    assert devices["qr-east-01"]["kind"] == "scanner"

    assert history.communities_in_area("350100", start - 86400) == [EAST, WEST]


def test_the_audit_pages(writer: Connection) -> None:
    """``audit_page``: one staff member's rows, or a county's (rows about its communities or
    the county, and rows of its staff), newest first, a page at a time, one row per audit id
    (a spooled row inserted twice), the subject as the table keeps it: masked."""
    token = "tok-resident-0099-abcdef"
    north = "91350200M000300Y21"
    rows = [
        AuditEntry("guard-east", SIGN_IN, "console@10.0.0.5", scope=f"community:{EAST}"),
        AuditEntry("guard-west", ALERT_ACK, "acklink@10.0.0.6", details={"alert_id": "a-1"}),
        AuditEntry("guard-north", SIGN_IN, "console@10.0.0.7", scope=f"community:{north}"),
        AuditEntry("officer", REPORT_EXPORT, "cli@h", scope="county:350100"),
        AuditEntry("guard-east", CONTACTS_QUERY, "cli@h", subject=token),
    ]
    written = [audit_row(entry, now_ms=1_800_000_000_000 + n) for n, entry in enumerate(rows)]
    writer.write("audit_log", written + written[:1])  # the first one twice
    mine = audit_page(writer, actor="guard-east")
    assert [r["action"] for r in mine.rows] == [CONTACTS_QUERY, SIGN_IN]
    assert mine.rows[0]["subject"] == "tok-****cdef" and not mine.has_next
    county = audit_page(writer, area="350100", area_staff=["guard-west"])
    assert [r["actor"] for r in county.rows] == ["officer", "guard-west", "guard-east"]
    assert county.rows[1]["alert_id"] == "a-1" and county.rows[1]["outcome"] == "ok"
    other = audit_page(writer, area="350200")
    assert [r["actor"] for r in other.rows] == ["guard-north"]
    first = audit_page(writer, area="350100", area_staff=["guard-west"], per_page=2)
    second = audit_page(writer, area="350100", area_staff=["guard-west"], page=2, per_page=2)
    assert (len(first.rows), first.has_next, len(second.rows), second.has_next) == (
        2,
        True,
        1,
        False,
    )
