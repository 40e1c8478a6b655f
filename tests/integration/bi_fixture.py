"""A small, hand-counted day of data for the BI views, dashboards and charts: three communities
in two counties, passes in two UTC hours, decisions with and without reasons, fever / breach /
overdue alerts, health reports — and one pass, its decision and one alert delivered twice, so
every figure also shows it is exact under redelivery.

``EXPECTED`` holds what the views must answer, counted by hand from the rows below."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sinks import Writer
from sinks.migrate import migrate
from tests.integration.scenario_script import credit_code

Row = dict[str, Any]

RETENTION_DAYS = 10_000  # the day is in 2020: a short TTL would expire it on insert
DAY = dt.date(2020, 2, 15)
DAY_NUMBER = (DAY - dt.date(1970, 1, 1)).days
COUNTY_FUZHOU = "350100"
COUNTY_DONGCHENG = "110105"
COMMUNITY_A = credit_code(f"53{COUNTY_FUZHOU}MJ000000A")
COMMUNITY_B = credit_code(f"53{COUNTY_FUZHOU}MJ000000B")
COMMUNITY_C = credit_code(f"53{COUNTY_DONGCHENG}MJ000000C")
SUBJECT = "5f0e9a7c2b4d4e6f8a1b3c5d7e9f0a12"  # a pseudonymous token, as the sink stores it


def utc_ms(hour: int, minute: int = 0) -> int:
    moment = dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _token(n: int) -> str:
    return f"{n:04d}" + "ab" * 12 + f"{n:04d}"


def _scan(n: int, community: str, direction: str, subject_type: str, subject: str, t: int) -> Row:
    return {
        "event_id": f"scan-{n:03d}",
        "community_id": community,
        "gate_id": "east",
        "device_id": "east-qr",
        "direction": direction,
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": None,
        "method": "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": 36.4,
        "event_time": t,
    }


def _decision(scan: Row, decision: str, reasons: list[str]) -> Row:
    return {
        "event_id": scan["event_id"],
        "community_id": scan["community_id"],
        "gate_id": scan["gate_id"],
        "subject_id": scan["subject_id"],
        "decision": decision,
        "reasons": reasons,
        "decided_at": scan["event_time"] + 40,
    }


def _alert(
    aid: str, kind: str, severity: str, community: str, subject: str | None, t: int, **details: str
) -> Row:
    return {
        "alert_id": aid,
        "alert_type": kind,
        "severity": severity,
        "community_id": community,
        "gate_id": "east" if subject else None,
        "device_id": None,
        "subject_id": subject,
        "source_event_ids": [],
        "message_zh": "预警",
        "message_en": "alert",
        "details": details,
        "event_time": t,
        "created_at": t + 100,
    }


def _action(n: int, alert: Row, action: str, after_s: int) -> Row:
    return {
        "action_id": f"action-{n:03d}",
        "alert_id": alert["alert_id"],
        "community_id": alert["community_id"],
        "action": action,
        "alert_type": alert["alert_type"],
        "severity": alert["severity"],
        "gate_id": alert["gate_id"],
        "staff_ids": ["staff-001"],
        "alert_event_time": alert["event_time"],
        "created_at": alert["event_time"] + after_s * 1000,
    }


def _report(n: int, community: str, resident: str) -> Row:
    return {
        "event_id": f"report-{n:03d}",
        "community_id": community,
        "resident_id": resident,
        "report_date": DAY_NUMBER,
        "temperature_c": 36.6,
        "symptoms": [],
        "event_time": utc_ms(1),
    }


def bi_rows() -> dict[str, list[Row]]:
    scans = [
        _scan(1, COMMUNITY_A, "IN", "RESIDENT", SUBJECT, utc_ms(2, 5)),
        _scan(2, COMMUNITY_A, "IN", "RESIDENT", _token(2), utc_ms(2, 10)),
        _scan(3, COMMUNITY_A, "IN", "RESIDENT", _token(3), utc_ms(2, 15)),
        _scan(4, COMMUNITY_A, "OUT", "RESIDENT", SUBJECT, utc_ms(2, 50)),
        _scan(5, COMMUNITY_A, "IN", "VISITOR", _token(5), utc_ms(3, 5)),
        _scan(6, COMMUNITY_B, "IN", "RESIDENT", _token(6), utc_ms(2, 20)),
        _scan(7, COMMUNITY_B, "IN", "RESIDENT", _token(7), utc_ms(2, 25)),
        _scan(8, COMMUNITY_C, "IN", "RESIDENT", _token(8), utc_ms(2, 30)),
    ]
    decisions = [
        _decision(scans[0], "ALLOW", []),
        _decision(scans[1], "RECHECK", ["FEVER_RECHECK"]),
        _decision(scans[2], "DENY", ["HEALTH_CODE_RED", "QUARANTINE_BREACH"]),
        _decision(scans[3], "ALLOW", []),
        _decision(scans[4], "ALLOW", []),
        _decision(scans[5], "ALLOW", []),
        _decision(scans[6], "DENY", ["HEALTH_CODE_RED"]),
        _decision(scans[7], "ALLOW", []),
    ]
    alerts = [
        _alert("alert-fever", "FEVER_CONFIRMED", "CRITICAL", COMMUNITY_A, _token(2), utc_ms(2, 12)),
        _alert(
            "alert-breach", "QUARANTINE_BREACH", "CRITICAL", COMMUNITY_A, _token(3), utc_ms(2, 16)
        ),
        _alert("alert-recheck", "FEVER_RECHECK", "WARNING", COMMUNITY_B, _token(6), utc_ms(2, 21)),
        _alert(
            "alert-overdue",
            "REPORT_OVERDUE",
            "WARNING",
            COMMUNITY_A,
            SUBJECT,
            utc_ms(12),
            date=DAY.isoformat(),
            deadline="20:00",
        ),
    ]
    actions = [
        _action(1, alerts[0], "NOTIFIED", 5),
        _action(2, alerts[0], "ACKNOWLEDGED", 90),  # fever: acknowledged after 90 s
        _action(3, alerts[0], "ACKNOWLEDGED", 300),  # a second ack does not move the first
        _action(4, alerts[1], "ACKNOWLEDGED", 240),  # breach: 240 s
        _action(5, alerts[2], "NOTIFIED", 5),  # recheck: never acknowledged
    ]
    reports = [
        _report(1, COMMUNITY_A, _token(2)),
        _report(2, COMMUNITY_A, _token(3)),
        _report(3, COMMUNITY_B, _token(6)),
    ]
    return {
        # the first pass, its decision and the fever alert arrive twice (Kafka redelivery)
        "gate_scans": [*scans, scans[0]],
        "gate_decisions": [*decisions, decisions[0]],
        "alerts": [*alerts, alerts[0]],
        "health_reports": reports,
        # the fever alert's acknowledgement arrives twice as well
        "alert_actions": [*actions, actions[1]],
    }


def load_bi_fixture(writer: Writer) -> None:
    """Migrate ``writer``'s database and write the fixture rows, one insert per copy so the
    duplicates are separate inserts, as a redelivery is."""
    migrate(writer, retention_days=RETENTION_DAYS)
    for table, rows in bi_rows().items():
        seen: set[str] = set()
        first, again = [], []
        for row in rows:
            key = str(row.get("action_id") or row.get("event_id") or row.get("alert_id"))
            (again if key in seen else first).append(row)
            seen.add(key)
        writer.write(table, first)
        if again:
            writer.write(table, again)


HOUR_2 = dt.datetime(2020, 2, 15, 2, tzinfo=dt.UTC)
HOUR_3 = dt.datetime(2020, 2, 15, 3, tzinfo=dt.UTC)
HOUR_12 = dt.datetime(2020, 2, 15, 12, tzinfo=dt.UTC)


def plain(value: Any) -> Any:
    """A value as every client returns it alike: a DateTime as epoch seconds, a Date as ISO text
    (chdb and clickhouse-driver differ in both)."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def plain_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(plain(v) for v in row) for row in rows]


# view → (ORDER BY, rows) counted by hand from bi_rows()
EXPECTED: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "bi_passes_hourly": (
        "community_id, hour, direction, subject_type",
        [
            (COMMUNITY_C, COUNTY_DONGCHENG, "east", HOUR_2, "IN", "RESIDENT", 1, 1),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_2, "IN", "RESIDENT", 3, 3),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_2, "OUT", "RESIDENT", 1, 1),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_3, "IN", "VISITOR", 1, 1),
            (COMMUNITY_B, COUNTY_FUZHOU, "east", HOUR_2, "IN", "RESIDENT", 2, 2),
        ],
    ),
    "bi_decisions_by_reason": (
        "community_id, hour, decision, reason",
        [
            (COMMUNITY_C, COUNTY_DONGCHENG, "east", HOUR_2, "ALLOW", "NONE", 1),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_2, "ALLOW", "NONE", 2),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_2, "DENY", "HEALTH_CODE_RED", 1),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_2, "DENY", "QUARANTINE_BREACH", 1),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_2, "RECHECK", "FEVER_RECHECK", 1),
            (COMMUNITY_A, COUNTY_FUZHOU, "east", HOUR_3, "ALLOW", "NONE", 1),
            (COMMUNITY_B, COUNTY_FUZHOU, "east", HOUR_2, "ALLOW", "NONE", 1),
            (COMMUNITY_B, COUNTY_FUZHOU, "east", HOUR_2, "DENY", "HEALTH_CODE_RED", 1),
        ],
    ),
    "bi_alerts_hourly": (
        "community_id, hour, alert_type",
        [
            (COMMUNITY_A, COUNTY_FUZHOU, HOUR_2, "FEVER_CONFIRMED", "CRITICAL", 1, 1),
            (COMMUNITY_A, COUNTY_FUZHOU, HOUR_2, "QUARANTINE_BREACH", "CRITICAL", 1, 1),
            (COMMUNITY_A, COUNTY_FUZHOU, HOUR_12, "REPORT_OVERDUE", "WARNING", 1, 1),
            (COMMUNITY_B, COUNTY_FUZHOU, HOUR_2, "FEVER_RECHECK", "WARNING", 1, 1),
        ],
    ),
    "bi_alerts": (
        "alert_id",
        [
            (
                "alert-breach",
                COMMUNITY_A,
                COUNTY_FUZHOU,
                "east",
                "QUARANTINE_BREACH",
                "CRITICAL",
                "0003****0003",
                "预警",
                "alert",
                dt.datetime(2020, 2, 15, 2, 16, tzinfo=dt.UTC),
            ),
            (
                "alert-fever",
                COMMUNITY_A,
                COUNTY_FUZHOU,
                "east",
                "FEVER_CONFIRMED",
                "CRITICAL",
                "0002****0002",
                "预警",
                "alert",
                dt.datetime(2020, 2, 15, 2, 12, tzinfo=dt.UTC),
            ),
            (
                "alert-overdue",
                COMMUNITY_A,
                COUNTY_FUZHOU,
                "east",
                "REPORT_OVERDUE",
                "WARNING",
                "5f0e****0a12",
                "预警",
                "alert",
                HOUR_12,
            ),
            (
                "alert-recheck",
                COMMUNITY_B,
                COUNTY_FUZHOU,
                "east",
                "FEVER_RECHECK",
                "WARNING",
                "0006****0006",
                "预警",
                "alert",
                dt.datetime(2020, 2, 15, 2, 21, tzinfo=dt.UTC),
            ),
        ],
    ),
    "bi_reports_daily": (
        "community_id",
        [
            (COMMUNITY_A, COUNTY_FUZHOU, DAY, 2, 1),
            (COMMUNITY_B, COUNTY_FUZHOU, DAY, 1, 0),
        ],
    ),
    "bi_alert_acknowledgements": (
        "alert_id",
        [
            (
                "alert-breach",
                COMMUNITY_A,
                COUNTY_FUZHOU,
                "QUARANTINE_BREACH",
                "CRITICAL",
                dt.datetime(2020, 2, 15, 2, 16, tzinfo=dt.UTC),
                dt.datetime(2020, 2, 15, 2, 20, tzinfo=dt.UTC),
                240,
            ),
            (
                "alert-fever",
                COMMUNITY_A,
                COUNTY_FUZHOU,
                "FEVER_CONFIRMED",
                "CRITICAL",
                dt.datetime(2020, 2, 15, 2, 12, tzinfo=dt.UTC),
                dt.datetime(2020, 2, 15, 2, 13, 30, tzinfo=dt.UTC),
                90,
            ),
        ],
    ),
    "bi_county_hourly": (
        "county_code, hour",
        [
            (COUNTY_DONGCHENG, HOUR_2, 1, 1, 0, 0, 0, 0),
            (COUNTY_FUZHOU, HOUR_2, 2, 5, 1, 1, 1, 3),
            (COUNTY_FUZHOU, HOUR_3, 1, 1, 0, 0, 0, 0),
            (COUNTY_FUZHOU, HOUR_12, 1, 0, 0, 0, 0, 1),
        ],
    ),
}
