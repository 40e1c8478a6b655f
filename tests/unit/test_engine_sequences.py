"""RuleEngine on sequences of events: decisions, alerts, windows, timers, replays, lateness."""

from __future__ import annotations

from typing import Any

import pytest

from streams.engine import Output, RuleEngine
from streams.rules.timeutil import clock_for

CID = "91350100M000100Y43"
OTHER_CID = "91110105MA01234567"
T0 = 1_700_000_000_000  # 2023-11-15 06:13:20 in Asia/Shanghai
RES = "res1a2b3c4d5e6f7a8b9c0d"
RES2 = "res2b3c4d5e6f7a8b9c0d1e"
QUARANTINED = "resq9f8e7d6c5b4a39281706"
UNREGISTERED = "resx0000000000000000000"
STAFF = "staff00000000000000000a1"
PASS = "pass00000000000000000001"
PLATE = "veh0000000000000000000p1"
HOUSEHOLD = "hh00000000000000000000h1"
OBS_START_DAY = clock_for("Asia/Shanghai").local_day(T0)
S = 1000
MIN = 60 * S
H = 60 * MIN


def scan(eid: str, t_ms: int, subject: str = RES, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": eid,
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": "D-01",
        "direction": "IN",
        "subject_type": "RESIDENT",
        "subject_id": subject,
        "household_id": None,
        "method": "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": None,
        "event_time": T0 + t_ms,
    }
    ev.update(fields)
    return ev


def reading(
    eid: str, t_ms: int, temp: float, subject: str | None = RES, device: str = "D-01"
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": device,
        "subject_id": subject,
        "temperature_c": temp,
        "ambient_c": None,
        "sensor": "INFRARED_GATE",
        "event_time": T0 + t_ms,
    }


def report(
    eid: str,
    day: int,
    t_ms: int,
    resident: str = QUARANTINED,
    temp: float | None = 36.5,
    symptoms: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "community_id": CID,
        "resident_id": resident,
        "report_date": day,
        "temperature_c": temp,
        "symptoms": list(symptoms),
        "event_time": T0 + t_ms,
    }


def engine(**rules: Any) -> RuleEngine:
    e = RuleEngine(allowed_lateness_s=300)
    for rid, status, household, consent in [
        (RES, "NORMAL", HOUSEHOLD, False),
        (RES2, "NORMAL", HOUSEHOLD, True),
        (QUARANTINED, "HOME_OBSERVATION", "hh-q", False),
    ]:
        e.upsert_resident(
            {
                "resident_id": rid,
                "community_id": CID,
                "household_id": household,
                "status": status,
                "observation_start": OBS_START_DAY if status == "HOME_OBSERVATION" else None,
                "key_groups": [],
                "face_consent": consent,
                "updated_at": 0,
            }
        )
    e.upsert_resident(
        {"resident_id": STAFF, "community_id": OTHER_CID, "status": "NORMAL", "household_id": None}
    )
    e.upsert_pass(
        {
            "pass_id": PASS,
            "community_id": CID,
            "host_resident_id": RES,
            "valid_from": T0 - H,
            "valid_until": T0 + 24 * H,
            "max_entries": 1,
            "revoked": False,
        }
    )
    e.upsert_vehicle({"vehicle_id": PLATE, "community_id": CID, "valid_until": None})
    if rules:
        e.upsert_rules({"community_id": CID, **rules})
    return e


def types(out: Output) -> list[str]:
    return [a["alert_type"] for a in out.alerts]


# ---------------------------------------------------------------- one scan, one decision


@pytest.mark.parametrize(
    ("event", "decision", "reasons"),
    [
        pytest.param(scan("e", 0), "ALLOW", [], id="registered resident with GREEN code allowed"),
        pytest.param(
            scan("e", 0, health_code="RED"), "DENY", ["HEALTH_CODE_RED"], id="RED code denies"
        ),
        pytest.param(
            scan("e", 0, health_code="YELLOW"),
            "WARN",
            ["HEALTH_CODE_YELLOW"],
            id="YELLOW code warns by default",
        ),
        pytest.param(
            scan("e", 0, QUARANTINED, direction="OUT"),
            "DENY",
            ["QUARANTINE_BREACH"],
            id="quarantined resident going out is a breach",
        ),
        pytest.param(
            scan("e", 0, QUARANTINED, direction="IN"),
            "ALLOW",
            [],
            id="quarantined resident coming home is allowed",
        ),
        pytest.param(
            scan("e", 0, UNREGISTERED),
            "DENY",
            ["UNKNOWN_SUBJECT"],
            id="unregistered resident denied",
        ),
        pytest.param(
            scan("e", 0, "anyone", subject_type="UNKNOWN"),
            "DENY",
            ["UNKNOWN_SUBJECT"],
            id="UNKNOWN subject type denied",
        ),
        pytest.param(
            scan("e", 0, STAFF, subject_type="STAFF"), "ALLOW", [], id="registered staff allowed"
        ),
        pytest.param(
            scan("e", 0, UNREGISTERED, subject_type="STAFF"),
            "DENY",
            ["UNKNOWN_SUBJECT"],
            id="unregistered staff denied",
        ),
        pytest.param(
            scan("e", 0, PASS, subject_type="VISITOR"), "ALLOW", [], id="visitor with pass allowed"
        ),
        pytest.param(
            scan("e", 0, "pass-unknown-000000", subject_type="VISITOR"),
            "DENY",
            ["PASS_INVALID"],
            id="visitor without a pass denied",
        ),
        pytest.param(
            scan("e", 25 * H, PASS, subject_type="VISITOR"),
            "DENY",
            ["PASS_INVALID"],
            id="visitor with expired pass denied",
        ),
        pytest.param(
            scan("e", 0, PLATE, subject_type="VEHICLE", method="PLATE"),
            "ALLOW",
            [],
            id="registered vehicle allowed",
        ),
        pytest.param(
            scan("e", 0, "veh-unknown-00000000", subject_type="VEHICLE", method="PLATE"),
            "DENY",
            ["VEHICLE_UNREGISTERED"],
            id="unregistered vehicle denied",
        ),
        pytest.param(
            scan("e", 0, RES2, method="FACE"),
            "ALLOW",
            [],
            id="face scan with consent on record allowed",
        ),
        pytest.param(
            scan("e", 0, temperature_c=37.9),
            "RECHECK",
            ["FEVER_RECHECK"],
            id="fever reading on scan asks for recheck",
        ),
        pytest.param(
            scan("e", 0, temperature_c=33.0),
            "WARN",
            ["TEMPERATURE_IMPLAUSIBLE"],
            id="implausible scan temperature prompts re-measure, never a fever",
        ),
        pytest.param(
            scan("e", 0, health_code="RED", temperature_c=38.0),
            "DENY",
            ["HEALTH_CODE_RED", "FEVER_RECHECK"],
            id="strictest action wins and every rule is named",
        ),
    ],
)
def test_single_scan_decision(event: dict[str, Any], decision: str, reasons: list[str]) -> None:
    out = engine().on_scans([event])
    assert len(out.decisions) == 1
    d = out.decisions[0]
    assert (d["decision"], d["reasons"]) == (decision, reasons)
    assert d["event_id"] == event["event_id"] and d["decided_at"] == event["event_time"]
    assert d["gate_id"] == "G-01" and d["community_id"] == CID
    assert types(out) == reasons


def test_face_without_consent_keeps_no_subject_id() -> None:
    out = engine().on_scans([scan("e", 0, RES, method="FACE", health_code="RED")])
    (d,) = out.decisions
    assert (d["decision"], d["reasons"], d["subject_id"]) == ("DENY", ["FACE_CONSENT_MISSING"], "")
    (alert,) = out.alerts
    assert alert["alert_type"] == "FACE_CONSENT_MISSING" and alert["subject_id"] is None
    text = repr(out.decisions) + repr(out.alerts)
    assert RES not in text and RES[:4] + "****" not in text


def test_decided_at_uses_supplied_now() -> None:
    out = engine().on_scans([scan("e", 0)], now_ms=T0 + 5 * S)
    assert out.decisions[0]["decided_at"] == T0 + 5 * S


def test_curfew_wraps_midnight() -> None:
    clock = clock_for("Asia/Shanghai")
    day = clock.local_day(T0)
    e = engine(curfew_start_minute=23 * 60, curfew_end_minute=6 * 60)
    at_2am = clock.to_epoch_ms(day, 2 * 60) - T0
    at_noon = clock.to_epoch_ms(day, 12 * 60) - T0
    at_2330 = clock.to_epoch_ms(day, 23 * 60 + 30) - T0
    out = e.on_scans([scan("a", at_2am), scan("b", at_noon), scan("c", at_2330, RES2)])
    assert [(d["decision"], d["reasons"]) for d in out.decisions] == [
        ("WARN", ["CURFEW_VIOLATION"]),
        ("ALLOW", []),
        ("WARN", ["CURFEW_VIOLATION"]),
    ]
    assert "02:00" in out.alerts[0]["message_zh"]


def test_curfew_follows_the_community_timezone() -> None:
    e = engine(curfew_start_minute=0, curfew_end_minute=60, timezone="Europe/Berlin")
    berlin = clock_for("Europe/Berlin")
    t = berlin.to_epoch_ms(berlin.local_day(T0) + 1, 30) - T0
    assert e.on_scans([scan("a", t)]).decisions[0]["decision"] == "WARN"


# ---------------------------------------------------------------- sequences of scans

Step = tuple[str, int, str, dict[str, Any]]  # event_id, t_ms, subject, extra fields


@pytest.mark.parametrize(
    ("rules", "steps", "expected"),
    [
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [("a", 0, RES, {"direction": "OUT"}), ("b", 24 * H, RES2, {"direction": "OUT"})],
            [("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="second exit in 48h by same household denied",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [("a", 0, RES, {"direction": "OUT"}), ("b", 48 * H, RES2, {"direction": "OUT"})],
            [("ALLOW", []), ("ALLOW", [])],
            id="exit after 48h allowed again",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [("a", 0, RES, {"direction": "OUT"}), ("b", H, RES2, {"direction": "IN"})],
            [("ALLOW", []), ("ALLOW", [])],
            id="entries do not count against an exit limit",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON"},
            [("a", 0, RES, {"direction": "OUT"}), ("b", H, RES2, {"direction": "OUT"})],
            [("ALLOW", []), ("ALLOW", [])],
            id="person limit counts each person",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON", "entry_limit_action": "WARN"},
            [("a", 0, RES, {"direction": "OUT"}), ("b", H, RES, {"direction": "OUT"})],
            [("ALLOW", []), ("WARN", ["ENTRY_LIMIT_EXCEEDED"])],
            id="limit action WARN lets the pass through with a warning",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON"},
            [
                ("a", 0, RES, {"direction": "OUT"}),
                ("b", 10 * S, RES, {"direction": "OUT"}),
                ("c", 20 * S, RES, {"direction": "OUT"}),
                ("d", 2 * MIN, RES, {"direction": "OUT"}),
            ],
            [("ALLOW", []), ("ALLOW", []), ("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="repeat scan within 30s counts once",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON"},
            [
                ("a", 0, RES, {"direction": "OUT"}),
                ("b", 10 * S, RES, {"direction": "OUT", "gate_id": "G-02"}),
            ],
            [("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="scan at another gate is another pass",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON", "entry_limit_count": 2},
            [
                ("a", 0, RES, {"direction": "OUT"}),
                ("a", 0, RES, {"direction": "OUT"}),
                ("b", H, RES, {"direction": "OUT"}),
                ("c", 2 * H, RES, {"direction": "OUT"}),
            ],
            [("ALLOW", []), ("ALLOW", []), ("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="replayed event_id counted once and same decision",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON"},
            [
                ("a", 0, RES, {"direction": "OUT", "health_code": "RED"}),
                ("b", H, RES, {"direction": "OUT"}),
            ],
            [("DENY", ["HEALTH_CODE_RED"]), ("ALLOW", [])],
            id="denied pass does not use the quota",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [
                ("a", 0, RES, {"direction": "OUT", "household_id": "hh-from-scan"}),
                ("b", H, RES2, {"direction": "OUT"}),
            ],
            [("ALLOW", ["HOUSEHOLD_MISMATCH"]), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="the register's household is counted, not the scan's (issue 20, behaviour 3)",
        ),
        pytest.param(
            {},
            [
                ("a", 0, PASS, {"subject_type": "VISITOR"}),
                ("b", 10 * S, PASS, {"subject_type": "VISITOR"}),
                ("c", H, PASS, {"subject_type": "VISITOR"}),
                ("d", 2 * H, PASS, {"subject_type": "VISITOR", "direction": "OUT"}),
            ],
            [("ALLOW", []), ("ALLOW", []), ("DENY", ["PASS_INVALID"]), ("ALLOW", [])],
            id="visitor entries used up after max_entries, repeat scan not counted",
        ),
        pytest.param(
            {},
            [
                ("a", 0, RES, {"temperature_c": 38.0}),
                ("b", 2 * MIN, RES, {"temperature_c": 38.2}),
            ],
            [("RECHECK", ["FEVER_RECHECK"]), ("RECHECK", ["FEVER_CONFIRMED"])],
            id="fever confirmed at the gate on recheck",
        ),
        pytest.param(
            {},
            [
                ("a", 0, RES, {"temperature_c": 38.0}),
                ("b", 2 * MIN, RES, {"temperature_c": 36.7}),
            ],
            [("RECHECK", ["FEVER_RECHECK"]), ("ALLOW", ["FEVER_CLEARED"])],
            id="recheck below threshold clears at the gate",
        ),
    ],
)
def test_scan_sequences(
    rules: dict[str, Any], steps: list[Step], expected: list[tuple[str, list[str]]]
) -> None:
    e = engine(**rules)
    got = []
    for eid, t_ms, subject, extra in steps:
        (d,) = e.on_scans([scan(eid, t_ms, subject, **extra)]).decisions
        got.append((d["decision"], d["reasons"]))
    assert got == expected


def test_replayed_scan_gets_identical_decision_and_no_new_alerts() -> None:
    e = engine()
    first = e.on_scans([scan("a", 0, health_code="RED")])
    again = e.on_scans([scan("a", 0, health_code="RED")])
    assert again.decisions == first.decisions and again.alerts == []
    assert e.stats["replayed_events"] == 1


def test_rules_change_applies_to_next_event() -> None:
    e = engine()
    a = e.on_scans([scan("a", 0, health_code="YELLOW")]).decisions[0]["decision"]
    e.upsert_rules({"community_id": CID, "yellow_code_action": "DENY"})
    b = e.on_scans([scan("b", S, RES2, health_code="YELLOW")]).decisions[0]["decision"]
    e.on_reference_update("rules", CID, None)  # tombstone: back to defaults
    c = e.on_scans([scan("c", 2 * S, RES, health_code="YELLOW")]).decisions[0]["decision"]
    assert (a, b, c) == ("WARN", "DENY", "WARN")


def test_injected_rules_mapping_is_reread_per_batch() -> None:
    records: dict[str, dict[str, Any]] = {}
    e = RuleEngine(rules=records, residents={})
    scan_yellow = scan("a", 0, "x", subject_type="UNKNOWN", health_code="YELLOW")
    assert e.on_scans([scan_yellow]).decisions[0]["reasons"] == [
        "HEALTH_CODE_YELLOW",
        "UNKNOWN_SUBJECT",
    ]
    records[CID] = {"community_id": CID, "curfew_start_minute": 0, "curfew_end_minute": 1439}
    out = e.on_scans([scan("b", S, "x", subject_type="UNKNOWN")])
    assert "CURFEW_VIOLATION" in out.decisions[0]["reasons"]


# ---------------------------------------------------------------- temperature readings


@pytest.mark.parametrize(
    ("batches", "expected"),
    [
        pytest.param(
            [[reading("a", 0, 38.0)], [reading("b", 2 * MIN, 38.1)]],
            ["FEVER_RECHECK", "FEVER_CONFIRMED"],
            id="fever confirmed on recheck within window",
        ),
        pytest.param(
            [[reading("a", 0, 38.0)], [reading("b", MIN, 36.6)]],
            ["FEVER_RECHECK", "FEVER_CLEARED"],
            id="recheck below threshold clears",
        ),
        pytest.param(
            [[reading("b", 200 * S, 36.5)], [reading("a", 100 * S, 38.0)]],
            ["FEVER_RECHECK", "FEVER_CLEARED"],
            id="out-of-order low reading clears; the gate's recheck request is still raised",
        ),
        pytest.param(
            [
                [reading("a", 0, 38.0)],
                [reading("b", 400 * S, 38.0)],
                [reading("x", 601 * S, 36.5, "other")],
            ],
            ["FEVER_RECHECK", "FEVER_RECHECK", "FEVER_RECHECK_MISSED"],
            id="reading after the window opens a new recheck; the first is missed once event "
            "time passes its window plus the lateness",
        ),
        pytest.param(
            [
                [reading("a", 0, 38.0), reading("x", 450 * S, 36.5, "other")],
                [reading("b", 200 * S, 38.2)],
            ],
            ["FEVER_RECHECK", "FEVER_CONFIRMED"],
            id="recheck within lateness confirms: the window is not closed before it could come",
        ),
        pytest.param(
            [[reading("a", 0, 33.0)], [reading("b", MIN, 38.0)]],
            ["TEMPERATURE_IMPLAUSIBLE", "FEVER_RECHECK"],
            id="implausible reading is never a fever",
        ),
        pytest.param(
            [
                [reading("a", 0, 38.0, None)],
                [reading("b", MIN, 38.3, None)],
                [reading("x", 7 * MIN, 36.5, "other")],
            ],
            ["FEVER_RECHECK", "FEVER_RECHECK"],
            id="without subject two readings of a gate are two people: two recheck requests "
            "(raised once the scan of their instant can no longer arrive)",
        ),
        pytest.param(
            [
                [reading("a", 0, 38.0, None)],
                [reading("b", MIN, 36.5, None)],
                [reading("x", 7 * MIN, 36.5, "other")],
            ],
            ["FEVER_RECHECK"],
            id="without subject the next person's normal reading clears nobody",
        ),
        pytest.param(
            [[reading("a", 0, 38.0)], [reading("a", 0, 38.0)]],
            ["FEVER_RECHECK"],
            id="replayed reading is ignored",
        ),
    ],
)
def test_reading_sequences(batches: list[list[dict[str, Any]]], expected: list[str]) -> None:
    e = engine()
    got: list[str] = []
    for batch in batches:
        got += types(e.on_readings(batch))
    assert got == expected


def test_cleared_fever_is_recorded_without_notifying_staff() -> None:
    e = engine()
    e.on_readings([reading("a", 0, 38.0)])
    (alert,) = e.on_readings([reading("b", MIN, 36.6)]).alerts
    assert (alert["severity"], alert["details"]["notify"]) == ("INFO", "false")
    assert alert["source_event_ids"] == ["a", "b"]


def test_confirmed_fever_is_critical_and_names_both_readings() -> None:
    e = engine()
    e.on_readings([reading("a", 0, 38.0)])
    (alert,) = e.on_readings([reading("b", MIN, 38.4)]).alerts
    assert alert["severity"] == "CRITICAL" and alert["source_event_ids"] == ["a", "b"]
    assert "38.4" in alert["message_zh"] and "38.0" in alert["message_zh"]
    assert RES not in alert["message_zh"] + alert["message_en"]


def test_missed_recheck_fires_on_tick_with_no_traffic() -> None:
    e = engine()
    e.on_readings([reading("a", 0, 38.0)])
    assert types(e.tick(T0 + 299 * S)) == []
    assert types(e.tick(T0 + 301 * S)) == []  # a recheck may still be on its way (lateness)
    out = e.tick(T0 + 601 * S)
    assert types(out) == ["FEVER_RECHECK_MISSED"]
    assert out.alerts[0]["event_time"] == T0 + 300 * S
    assert types(e.tick(T0 + 700 * S)) == []


# ---------------------------------------------------------------- device health


def test_silent_device_alerted_once() -> None:
    e = engine()
    e.on_readings([reading("a0", -30 * S, 36.5), reading("a", 0, 36.5)])
    assert types(e.tick(T0 + 600 * S)) == []
    assert types(e.tick(T0 + 601 * S)) == ["DEVICE_SILENT"]
    assert types(e.tick(T0 + 1200 * S)) == []
    e.on_readings([reading("b", 1300 * S, 36.5)])
    assert types(e.tick(T0 + 1901 * S)) == []  # the first tick after traffic: event time decides
    assert types(e.tick(T0 + 1902 * S)) == ["DEVICE_SILENT"]


def test_handheld_gun_used_for_rechecks_is_never_silent() -> None:
    e = engine()
    e.on_readings([{**reading("h", 0, 36.5, device="H-01"), "sensor": "INFRARED_HANDHELD"}])
    assert types(e.tick(T0 + 3600 * S)) == []


def test_drift_flagged_for_device_reading_2c_low() -> None:
    e = engine()
    events = []
    for i in range(6):
        for n, dev in enumerate(["D-01", "D-02", "D-03", "D-04"]):
            temp = 34.5 if dev == "D-04" else 36.5
            events.append(reading(f"{dev}-{i}", i * 20 * S + n, temp, None, dev))
    out = e.on_readings(events)
    drift = [a for a in out.alerts if a["alert_type"] == "DEVICE_DRIFT"]
    assert [a["device_id"] for a in drift] == ["D-04"]
    assert drift[0]["details"]["device_mean_c"] == "34.5"
    assert drift[0]["details"]["others_mean_c"] == "36.5"


# ---------------------------------------------------------------- health reports


def _local(day_offset: int, minute: int) -> int:
    """ms after T0 of local Shanghai ``minute`` on observation day ``day_offset``."""
    return clock_for("Asia/Shanghai").to_epoch_ms(OBS_START_DAY + day_offset, minute) - T0


def test_overdue_report_fires_on_tick_with_no_traffic() -> None:
    e = engine()
    assert types(e.tick(T0 + _local(1, 9 * 60 + 59))) == []
    out = e.tick(T0 + _local(1, 10 * 60 + 1))
    assert types(out) == ["REPORT_OVERDUE"]
    alert = out.alerts[0]
    assert alert["subject_id"] == QUARANTINED and alert["event_time"] == T0 + _local(1, 600)
    assert QUARANTINED not in alert["message_zh"]
    assert types(e.tick(T0 + _local(1, 10 * 60 + 5))) == []  # once per day
    assert types(e.tick(T0 + _local(2, 10 * 60 + 1))) == ["REPORT_OVERDUE"]


def test_report_before_deadline_prevents_overdue() -> None:
    e = engine()
    e.on_reports([report("r1", OBS_START_DAY + 1, _local(1, 8 * 60))])
    assert types(e.tick(T0 + _local(1, 11 * 60))) == []


def test_overdue_uses_community_deadline() -> None:
    e = engine(report_deadline_minute=12 * 60)
    assert types(e.tick(T0 + _local(1, 11 * 60))) == []
    assert types(e.tick(T0 + _local(1, 12 * 60))) == ["REPORT_OVERDUE"]


@pytest.mark.parametrize(
    ("symptom_day", "days", "expected"),
    [
        pytest.param(
            None, 14, ["OBSERVATION_COMPLETED"], id="observation completed after 14 clean days"
        ),
        pytest.param(3, 14, ["SYMPTOMS_REPORTED"], id="symptoms during observation: no completion"),
        pytest.param(None, 13, [], id="13 of 14 days: not completed yet"),
    ],
)
def test_observation_completion(symptom_day: int | None, days: int, expected: list[str]) -> None:
    e = engine()
    got: list[str] = []
    for d in range(days):
        symptoms = ("FATIGUE",) if d == symptom_day else ()
        ev = report(f"r{d}", OBS_START_DAY + d, _local(d, 8 * 60), symptoms=symptoms)
        got += types(e.on_reports([ev]))
    got += types(e.tick(T0 + _local(days, 8 * 60)))
    assert got == expected


def test_observation_completed_once() -> None:
    e = engine()
    for d in range(14):
        e.on_reports([report(f"r{d}", OBS_START_DAY + d, _local(d, 8 * 60))])
    assert types(e.on_reports([report("again", OBS_START_DAY + 13, _local(13, 9 * 60))])) == []
    assert types(e.tick(T0 + _local(14, 8 * 60))) == ["OBSERVATION_COMPLETED"]  # day 13 is over
    assert types(e.tick(T0 + _local(14, 9 * 60))) == []


@pytest.mark.parametrize(
    ("ev", "expected"),
    [
        pytest.param(
            report("r", OBS_START_DAY, 0, RES, symptoms=("SHORTNESS_OF_BREATH",)),
            [("SYMPTOMS_REPORTED", "CRITICAL")],
            id="shortness of breath reported is critical",
        ),
        pytest.param(
            report("r", OBS_START_DAY, 0, RES, temp=38.2),
            [("FEVER_REPORTED", "WARNING")],
            id="self-reported fever",
        ),
        pytest.param(
            report("r", OBS_START_DAY, 0, RES, temp=38.2, symptoms=("DRY_COUGH",)),
            [("SYMPTOMS_REPORTED", "WARNING"), ("FEVER_REPORTED", "WARNING")],
            id="symptoms and fever both alerted",
        ),
        pytest.param(report("r", OBS_START_DAY, 0, RES), [], id="clean report no alert"),
    ],
)
def test_report_alerts(ev: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    out = engine().on_reports([ev])
    assert [(a["alert_type"], a["severity"]) for a in out.alerts] == expected


# ---------------------------------------------------------------- alerts across events


def test_alert_suppressed_within_window() -> None:
    e = engine()
    out = e.on_scans(
        [
            scan("a", 0, health_code="RED"),
            scan("b", MIN, health_code="RED"),
            scan("c", 11 * MIN, health_code="RED"),
        ]
    )
    assert [d["decision"] for d in out.decisions] == ["DENY", "DENY", "DENY"]
    assert [a["source_event_ids"] for a in out.alerts] == [["a"], ["c"]]
    assert e.stats["suppressed_alerts"] == 1


def _mixed_run() -> list[str]:
    e = engine(entry_limit_scope="PERSON")
    ids: list[str] = []
    ids += [a["alert_id"] for a in e.on_readings([reading("t1", 0, 38.0)]).alerts]
    out = e.on_scans(
        [
            scan("s1", S, health_code="RED"),
            scan("s2", 2 * S, QUARANTINED, direction="OUT"),
            scan("s3", 3 * S, RES2, direction="OUT"),
            scan("s4", H, RES2, direction="OUT"),
        ]
    )
    ids += [a["alert_id"] for a in out.alerts]
    ids += [a["alert_id"] for a in e.tick(T0 + _local(1, 11 * 60)).alerts]
    return ids


def test_alert_ids_deterministic_across_replay() -> None:
    first, second = _mixed_run(), _mixed_run()
    assert first == second
    assert len(first) == len(set(first)) >= 5


# ---------------------------------------------------------------- event time


def test_late_event_beyond_lateness_counted_not_dropped() -> None:
    e = engine(entry_limit_scope="PERSON")
    e.on_scans([scan("now", 1000 * S, RES2)])
    out = e.on_scans([scan("old", 0, direction="OUT"), scan("old2", 10 * S, direction="OUT")])
    assert out.late == 2 and out.late_event_ids == ["old", "old2"]
    assert e.stats["late_events"] == 2
    assert [d["decision"] for d in out.decisions] == ["ALLOW", "ALLOW"]  # no window state used


def test_event_within_lateness_is_not_late() -> None:
    e = engine()
    e.on_scans([scan("now", 1000 * S)])
    out = e.on_scans([scan("old", 700 * S, RES2)])
    assert out.late == 0


def test_watermarks_are_per_community() -> None:
    e = engine()
    e.on_scans([scan("a", 10 * H)])
    out = e.on_scans([scan("b", 0, community_id=OTHER_CID, subject_type="UNKNOWN")])
    assert out.late == 0


# ---------------------------------------------------------------- state stays bounded


def test_sweep_expires_windowed_state() -> None:
    e = engine(entry_limit_scope="PERSON")
    e.on_readings([reading("t", 0, 36.5), reading("h", 0, 38.0, RES2)])
    e.on_scans([scan("s", S, direction="OUT"), scan("r", 2 * S, health_code="RED")])
    e.tick(T0 + 601 * S)
    before = e.state_sizes()
    assert before["recheck_keys"] == 2 and before["quota_keys"] == 1
    # pass history is kept for the longest configurable window (7 days), not the 48 h in force
    e.on_scans([scan("late", 8 * 24 * H, RES2, subject_type="UNKNOWN")])
    e.tick(T0 + 8 * 24 * H)
    after = e.state_sizes()
    assert after["recheck_keys"] == 0 and after["quota_keys"] == 0
    assert after["dedupe_keys"] == 0 and after["open_rechecks"] == 0
    assert e.stats["expired_state"] > 0


def test_tombstoned_resident_is_unknown_and_leaves_observation() -> None:
    e = engine()
    e.on_reference_update("residents", QUARANTINED, None)
    out = e.on_scans([scan("a", 0, QUARANTINED)])
    assert out.decisions[0]["reasons"] == ["UNKNOWN_SUBJECT"]
    assert "REPORT_OVERDUE" not in types(e.tick(T0 + _local(1, 11 * 60)))
