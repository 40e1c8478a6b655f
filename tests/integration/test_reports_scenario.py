"""A scripted day of events for the reporting tests, and the figures computed from it in plain
Python (independently of ClickHouse). Other ``test_reports_*`` modules import it; the tests
here check that the script holds the situations those tests rely on."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fangxian.core.codes import credit_code_check_char
from schemas import contract
from sinks import Writer, migrate, open_writer

Event = dict[str, Any]

TIMEZONE = "Asia/Shanghai"
DAY = dt.date(2020, 2, 15)
RETENTION_DAYS = 10_000  # the day is in 2020: a short TTL would expire it on insert
WINDOW_MS = 600_000

SYMPTOMS = contract.SYMPTOMS
ALERT_TYPES = (
    "FEVER_RECHECK",
    "FEVER_CONFIRMED",
    "FEVER_CLEARED",
    "TEMPERATURE_IMPLAUSIBLE",
    "HEALTH_CODE_YELLOW",
    "QUARANTINE_BREACH",
)
SUBJECT_TYPES = ("RESIDENT",) * 14 + ("VISITOR",) * 2 + ("VEHICLE",) * 2 + ("STAFF", "UNKNOWN")


def community_code(county: str, serial: int) -> str:
    first17 = f"91{county}MA{serial:07d}"
    return first17 + credit_code_check_char(first17)


COMMUNITY_A = community_code("350100", 1)
COMMUNITY_B = community_code("350100", 2)
COMMUNITY_C = community_code("110105", 3)
COMMUNITIES = (COMMUNITY_A, COMMUNITY_B, COMMUNITY_C)


def token(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:32]


def local_ms(day: dt.date, hh: int, mm: int, ss: int = 0, ms: int = 0) -> int:
    moment = dt.datetime.combine(day, dt.time(hh, mm, ss), tzinfo=ZoneInfo(TIMEZONE))
    return int(moment.timestamp() * 1000) + ms


DAY_START = local_ms(DAY, 0, 0)
DAY_END = local_ms(DAY + dt.timedelta(days=1), 0, 0)

# The known trajectory: SUBJECT passes gate-0 of A at 08:00 and gate-1 of A at 12:00.
SUBJECT = token("the subject")
KNOWN_CONTACTS = {  # label → (community, gate, time, is a contact within ±10 min)
    "same gate +5 min": (COMMUNITY_A, "gate-0", local_ms(DAY, 8, 5), True),
    "same gate exactly -10 min": (COMMUNITY_A, "gate-0", local_ms(DAY, 7, 50), True),
    "same gate 10 min + 1 ms": (COMMUNITY_A, "gate-0", local_ms(DAY, 8, 10, 0, 1), False),
    "other gate same time": (COMMUNITY_A, "gate-1", local_ms(DAY, 8, 0), False),
    "second pass +9:59": (COMMUNITY_A, "gate-1", local_ms(DAY, 12, 9, 59), True),
    "same gate name, other community": (COMMUNITY_B, "gate-0", local_ms(DAY, 8, 0), False),
}


@dataclass
class Scenario:
    scans: list[Event] = field(default_factory=list)
    readings: list[Event] = field(default_factory=list)
    reports: list[Event] = field(default_factory=list)
    decisions: list[Event] = field(default_factory=list)
    alerts: list[Event] = field(default_factory=list)

    def tables(self) -> dict[str, list[Event]]:
        return {
            "gate_scans": self.scans,
            "temperature_readings": self.readings,
            "health_reports": self.reports,
            "gate_decisions": self.decisions,
            "alerts": self.alerts,
        }


def _scan(
    n: int, community: str, gate: str, subject_type: str, subject: str, t: int, **kw: Any
) -> Event:
    return {
        "event_id": f"scan-{community[-6:]}-{n:05d}",
        "community_id": community,
        "gate_id": gate,
        "device_id": f"{gate}-qr",
        "direction": kw.get("direction", "IN"),
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": None,
        "method": "PLATE" if subject_type == "VEHICLE" else "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": 36.4,
        "event_time": t,
    }


def build_scenario(seed: int = 2020, scans_per_community: int = 300) -> Scenario:
    rng = random.Random(seed)
    sc = Scenario()
    shared_vehicles = [token(f"vehicle-shared-{i}") for i in range(3)]  # seen in A and B
    n = 0
    for ci, community in enumerate(COMMUNITIES):
        residents = [token(f"resident-{ci}-{i}") for i in range(60)]
        people = {
            "RESIDENT": residents,
            "VISITOR": [token(f"pass-{ci}-{i}") for i in range(8)],
            "VEHICLE": [token(f"vehicle-{ci}-{i}") for i in range(4)]
            + (shared_vehicles if ci < 2 else []),
            "STAFF": [token(f"staff-{ci}-{i}") for i in range(3)],
            "UNKNOWN": [token(f"unknown-{ci}-{i}") for i in range(5)],
        }
        # background: two hours either side of the day, so some fall outside it
        times = [
            rng.randrange(DAY_START - 7_200_000, DAY_END + 7_200_000)
            for _ in range(scans_per_community)
        ]
        times += [DAY_START, DAY_END - 1, DAY_END]  # first ms in, last ms in, first ms out
        for t in times:
            kind = rng.choice(SUBJECT_TYPES)
            n += 1
            sc.scans.append(
                _scan(
                    n,
                    community,
                    f"gate-{rng.randrange(3)}",
                    kind,
                    rng.choice(people[kind]),
                    t,
                    direction=rng.choice(("IN", "OUT")),
                )
            )
        for i in range(40):
            resident = residents[i]
            report_day = DAY if i < 34 else DAY - dt.timedelta(days=1)
            for copy in range(2 if i == 0 else 1):  # resident 0 reports twice that day
                sc.reports.append(
                    {
                        "event_id": f"report-{ci}-{i}-{copy}",
                        "community_id": community,
                        "resident_id": resident,
                        "report_date": (report_day - dt.date(1970, 1, 1)).days,
                        "temperature_c": 36.6,
                        "symptoms": rng.sample(SYMPTOMS, rng.choice((0, 0, 1, 2))),
                        "event_time": local_ms(report_day, 8, rng.randrange(60)),
                    }
                )
        for i in range(30, 45):  # overdue: some also reported (late), most did not
            day = DAY if i < 42 else DAY - dt.timedelta(days=1)
            sc.alerts.append(
                _alert(
                    f"overdue-{ci}-{i}",
                    "REPORT_OVERDUE",
                    "WARNING",
                    community,
                    residents[i],
                    local_ms(day, 10, 0),
                )
            )
        for i in range(40):
            kind = rng.choice(ALERT_TYPES)
            t = rng.randrange(DAY_START - 3_600_000, DAY_END + 3_600_000)
            sc.alerts.append(
                _alert(
                    f"alert-{ci}-{i}",
                    kind,
                    rng.choice(("INFO", "WARNING", "CRITICAL")),
                    community,
                    rng.choice(residents),
                    t,
                )
            )
        sc.alerts.append(
            _alert(
                f"silent-{ci}", "DEVICE_SILENT", "WARNING", community, None, local_ms(DAY, 13, 0)
            )
        )
    # the known trajectory and its neighbours
    sc.scans.append(_scan(90_001, COMMUNITY_A, "gate-0", "RESIDENT", SUBJECT, local_ms(DAY, 8, 0)))
    sc.scans.append(
        _scan(
            90_002,
            COMMUNITY_A,
            "gate-1",
            "RESIDENT",
            SUBJECT,
            local_ms(DAY, 12, 0),
            direction="OUT",
        )
    )
    for i, (label, (community, gate, t, _)) in enumerate(KNOWN_CONTACTS.items()):
        sc.scans.append(_scan(91_000 + i, community, gate, "VISITOR", token(label), t))
    sc.reports.append(
        {
            "event_id": "report-subject",
            "community_id": COMMUNITY_A,
            "resident_id": SUBJECT,
            "report_date": (DAY - dt.date(1970, 1, 1)).days,
            "temperature_c": 37.9,
            "symptoms": ["FEVER", "DRY_COUGH"],
            "event_time": local_ms(DAY, 9, 0),
        }
    )
    sc.alerts.append(
        _alert(
            "subject-fever",
            "FEVER_CONFIRMED",
            "CRITICAL",
            COMMUNITY_A,
            SUBJECT,
            local_ms(DAY, 8, 2),
        )
    )
    # issue 20's early warnings, re-emitted with the same id as they change: each counts once
    for kind, severity, versions in (
        ("CLUSTER_SUSPECTED", "CRITICAL", [{"cases": "3"}, {"cases": "4"}, {"cases": "5"}]),
        ("OCCUPANCY_OVER_CAPACITY", "WARNING", [{"status": "OVER"}, {"status": "CLEARED"}]),
        ("GATE_ANOMALY", "WARNING", [{"refusals": "12"}]),
    ):
        for details in versions:
            sc.alerts.append(
                {
                    **_alert(f"ew-{kind}", kind, severity, COMMUNITY_A, None, local_ms(DAY, 9, 5)),
                    "details": details,
                }
            )
    for scan in sc.scans:
        sc.decisions.append(
            {
                "event_id": scan["event_id"],
                "community_id": scan["community_id"],
                "gate_id": scan["gate_id"],
                "subject_id": scan["subject_id"],
                "decision": rng.choice(("ALLOW", "ALLOW", "ALLOW", "WARN", "RECHECK", "DENY")),
                "reasons": [],
                "decided_at": scan["event_time"] + rng.randrange(3000),
            }
        )
        if scan["subject_type"] != "VEHICLE" and scan["direction"] == "IN":
            sc.readings.append(
                {
                    "event_id": "reading-" + scan["event_id"],
                    "community_id": scan["community_id"],
                    "gate_id": scan["gate_id"],
                    "device_id": scan["gate_id"] + "-ir",
                    "subject_id": scan["subject_id"],
                    "temperature_c": 36.5,
                    "ambient_c": None,
                    "sensor": "INFRARED_GATE",
                    "event_time": scan["event_time"],
                }
            )
    return sc


def _alert(
    aid: str, kind: str, severity: str, community: str, subject: str | None, t: int
) -> Event:
    return {
        "alert_id": aid,
        "alert_type": kind,
        "severity": severity,
        "community_id": community,
        "gate_id": None,
        "device_id": None,
        "subject_id": subject,
        "source_event_ids": [],
        "message_zh": "告警",
        "message_en": "alert",
        "details": {},
        "event_time": t,
        "created_at": t + 100,
    }


def write_scenario(writer: Writer, scenario: Scenario) -> None:
    for table, rows in scenario.tables().items():
        writer.write(table, rows)


# --- the figures, computed from the event dicts alone -------------------------------------------


def expected_report(
    sc: Scenario, in_scope: Callable[[str], bool], day: dt.date = DAY
) -> dict[str, Any]:
    """The report's figures for the communities ``in_scope`` on local ``day``, in plain Python."""
    start, end = local_ms(day, 0, 0), local_ms(day + dt.timedelta(days=1), 0, 0)
    days = (day - dt.date(1970, 1, 1)).days

    def today(t: int) -> bool:
        return start <= t < end

    scans = {
        s["event_id"]: s for s in sc.scans if in_scope(s["community_id"]) and today(s["event_time"])
    }
    alerts = {
        a["alert_id"]: a
        for a in sc.alerts
        if in_scope(a["community_id"]) and today(a["event_time"])
    }
    decisions = {
        d["event_id"]: d
        for d in sc.decisions
        if in_scope(d["community_id"]) and today(d["decided_at"])
    }
    reports = [r for r in sc.reports if in_scope(r["community_id"]) and r["report_date"] == days]

    def distinct(kind: str, direction: str) -> int:
        return len(
            {
                s["subject_id"]
                for s in scans.values()
                if s["subject_type"] == kind and s["direction"] == direction
            }
        )

    def alert_count(kind: str) -> int:
        return sum(1 for a in alerts.values() if a["alert_type"] == kind)

    overdue = {a["subject_id"] for a in alerts.values() if a["alert_type"] == "REPORT_OVERDUE"}
    reported = {r["resident_id"] for r in reports}
    hours = [0] * 24
    for s in scans.values():
        hours[(s["event_time"] - start) // 3_600_000] += 1
    by_type_severity: dict[tuple[str, str], int] = {}
    for a in alerts.values():
        key = (a["alert_type"], a["severity"])
        by_type_severity[key] = by_type_severity.get(key, 0) + 1
    touched = {s["community_id"] for s in scans.values()} | {
        a["community_id"] for a in alerts.values()
    }
    touched |= {d["community_id"] for d in decisions.values()} | {
        r["community_id"] for r in reports
    }
    return {
        "figures": {
            "communities": len(touched),
            "entries": sum(1 for s in scans.values() if s["direction"] == "IN"),
            "exits": sum(1 for s in scans.values() if s["direction"] == "OUT"),
            "residents_out": distinct("RESIDENT", "OUT"),
            "visitors": distinct("VISITOR", "IN"),
            "vehicles": distinct("VEHICLE", "IN"),
            "fever_rechecks": alert_count("FEVER_RECHECK"),
            "fevers_confirmed": alert_count("FEVER_CONFIRMED"),
            "implausible_readings": alert_count("TEMPERATURE_IMPLAUSIBLE"),
            "under_observation": len(reported | overdue),
            "reports_received": len(reported),
            "reports_overdue": len(overdue),
            "clusters_suspected": alert_count("CLUSTER_SUSPECTED"),
            "occupancy_exceeded": alert_count("OCCUPANCY_OVER_CAPACITY"),
            "gate_anomalies": alert_count("GATE_ANOMALY"),
        },
        "symptoms": {
            k: len({r["resident_id"] for r in reports if k in r["symptoms"]}) for k in SYMPTOMS
        },
        "alerts": sorted((t, s, n) for (t, s), n in by_type_severity.items()),
        "decisions": {
            k: sum(1 for d in decisions.values() if d["decision"] == k)
            for k in ("ALLOW", "WARN", "RECHECK", "DENY")
        },
        "passes_by_hour": hours,
    }


def expected_contacts(sc: Scenario, subject: str, window_ms: int) -> set[tuple[str, int]]:
    """(contact token, contact time) of every other pass within the window, brute force."""
    mine = [
        s
        for s in sc.scans
        if s["subject_id"] == subject and DAY_START <= s["event_time"] <= DAY_END
    ]
    return {
        (s["subject_id"], s["event_time"])
        for s in sc.scans
        if s["subject_id"] != subject
        and any(
            (m["community_id"], m["gate_id"]) == (s["community_id"], s["gate_id"])
            and abs(m["event_time"] - s["event_time"]) <= window_ms
            for m in mine
        )
    }


@pytest.fixture(
    name="db",
    params=[
        pytest.param("chdb_url", marks=pytest.mark.chdb, id="chdb"),
        pytest.param("clickhouse_url", marks=pytest.mark.clickhouse_server, id="server-18.16"),
    ],
)
def db_fixture(request: pytest.FixtureRequest) -> Iterator[Writer]:
    """A migrated, empty database on each backend."""
    opened = open_writer(request.getfixturevalue(request.param))
    try:
        migrate(opened, retention_days=RETENTION_DAYS)
        yield opened
    finally:
        opened.close()


# --- the script holds what the other tests rely on ----------------------------------------------


def test_the_scenario_is_the_same_every_time() -> None:
    assert build_scenario() == build_scenario()


def test_the_scenario_has_passes_outside_the_day_and_on_its_edges() -> None:
    times = [s["event_time"] for s in build_scenario().scans]
    assert any(t < DAY_START for t in times) and any(t >= DAY_END for t in times)
    assert DAY_START in times and DAY_END - 1 in times and DAY_END in times


def test_county_distinct_vehicles_differ_from_the_sum_over_communities() -> None:
    sc = build_scenario()
    county = expected_report(sc, lambda c: c[2:8] == "350100")["figures"]["vehicles"]
    parts = [
        expected_report(sc, x.__eq__)["figures"]["vehicles"] for x in (COMMUNITY_A, COMMUNITY_B)
    ]
    assert county < sum(parts)  # a shared vehicle entered both: the county counts it once


def test_the_known_trajectory_has_contacts_in_and_out_of_the_window() -> None:
    found = expected_contacts(build_scenario(), SUBJECT, WINDOW_MS)
    for label, (_, _, t, is_contact) in KNOWN_CONTACTS.items():
        assert ((token(label), t) in found) == is_contact, label
