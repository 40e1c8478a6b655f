"""Issue 20: behaviours a community would not sign off, each a table of cases (docs/rules.md has
a section per behaviour saying what was decided and why).

2. Nobody is kept inside: what refuses an entry because of *who* is at the gate lets them out.
3. The register's household is counted, not the scan's; a scan that disagrees is alerted.
4. Returning home is never refused by an entry/exit count.
5. Re-scans within the dedupe window are one pass: counted once, the same outcome.
7. A face without consent at 38.8 °C: the fever is screened, the person stays unidentified.
8. Message numbers agree with the rule's comparison words (≥ vs <), in both languages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from fangxian.edge.fallback import FallbackPolicy, Replica, fallback_decision
from streams.engine import Output, RuleEngine
from streams.rules.alerts import TEMPLATES, render
from streams.rules.config import DEFAULT_RULES
from streams.rules.temperature import HIGH, IMPLAUSIBLE, NORMAL, classify, tenths
from streams.rules.timeutil import clock_for
from streams.state.alerter import fmt_c

CID = "91350100M000100Y43"
OTHER_CID = "91110105MA01234567"
T0 = 1_700_000_000_000  # 2023-11-15 06:13:20 Asia/Shanghai
S = 1000
MIN = 60 * S
H = 60 * MIN
LATENESS_S = 300

RES = "res1a2b3c4d5e6f7a8b9c0d"  # household HH
RES2 = "res2b3c4d5e6f7a8b9c0d1e"  # household HH
RES3 = "res3c4d5e6f7a8b9c0d1e2f"  # household HH3
LONER = "res4d5e6f7a8b9c0d1e2f3a"  # no household in the register
QUARANTINED = "resq9f8e7d6c5b4a39281706"
ELSEWHERE_Q = "resw9f8e7d6c5b4a39281706"  # under home observation in another community
ELSEWHERE_H = "resh9f8e7d6c5b4a39281706"  # hospitalised, registered in another community
UNREGISTERED = "resx0000000000000000000"
PASS = "pass00000000000000000001"
PLATE = "veh0000000000000000000p1"
HH = "hh00000000000000000000h1"
HH3 = "hh00000000000000000000h3"
STALE = "hh0000000000000000000old"
FORGED = "hh000000000000000000fake"


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
    eid: str, t_ms: int, temp: float, subject: str | None = RES, sensor: str = "INFRARED_GATE"
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": "D-01" if sensor == "INFRARED_GATE" else "H-01",
        "subject_id": subject,
        "temperature_c": temp,
        "ambient_c": None,
        "sensor": sensor,
        "event_time": T0 + t_ms,
    }


def report(eid: str, t_ms: int, temp: float, resident: str = RES) -> dict[str, Any]:
    return {
        "event_id": eid,
        "community_id": CID,
        "resident_id": resident,
        "report_date": clock_for("Asia/Shanghai").local_day(T0 + t_ms),
        "temperature_c": temp,
        "symptoms": [],
        "event_time": T0 + t_ms,
    }


def _resident(rid: str, household: str | None, status: str = "NORMAL", cid: str = CID) -> dict:
    return {
        "resident_id": rid,
        "community_id": cid,
        "household_id": household,
        "status": status,
        "observation_start": None,
        "key_groups": [],
        "face_consent": False,
        "updated_at": 0,
    }


def _pass(**overrides: Any) -> dict[str, Any]:
    return {
        "pass_id": PASS,
        "community_id": CID,
        "host_resident_id": RES,
        "valid_from": T0 - H,
        "valid_until": T0 + 24 * H,
        "max_entries": 1,
        "revoked": False,
        **overrides,
    }


def engine(**rules: Any) -> RuleEngine:
    e = RuleEngine(allowed_lateness_s=LATENESS_S)
    for record in (
        _resident(RES, HH),
        _resident(RES2, HH),
        _resident(RES3, HH3),
        _resident(LONER, None),
        _resident(QUARANTINED, "hh-q", "HOME_OBSERVATION"),
        _resident(ELSEWHERE_Q, "hh-w", "HOME_OBSERVATION", OTHER_CID),
        _resident(ELSEWHERE_H, "hh-h", "HOSPITALIZED", OTHER_CID),
    ):
        e.upsert_resident(record)
    e.upsert_pass(_pass())
    e.upsert_vehicle({"vehicle_id": PLATE, "community_id": CID, "valid_until": None})
    if rules:
        e.upsert_rules({"community_id": CID, **rules})
    return e


def decided(out: Output) -> list[tuple[str, list[str]]]:
    return [(d["decision"], d["reasons"]) for d in out.decisions]


Step = dict[str, Any] | Callable[[RuleEngine], None]


def run_steps(e: RuleEngine, steps: list[Step]) -> tuple[list[tuple[str, list[str]]], Output]:
    """Each scan in its own batch; a callable step changes reference data in between."""
    got: list[tuple[str, list[str]]] = []
    alerts = Output()
    for step in steps:
        if callable(step):
            step(e)
            continue
        out = e.on_scans([step])
        got += decided(out)
        alerts.alerts += out.alerts
    return got, alerts


# ------------------------------------------------------------------ 2. nobody is kept inside

VISITOR: dict[str, Any] = {"subject_type": "VISITOR", "method": "HEALTH_CODE"}
CAR: dict[str, Any] = {"subject_type": "VEHICLE", "method": "PLATE", "health_code": "UNKNOWN"}


def _revoke(e: RuleEngine) -> None:
    e.upsert_pass(_pass(revoked=True))


def _forget_pass(e: RuleEngine) -> None:
    e.delete_pass(PASS)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [
                scan("in", 0, PASS, **VISITOR),
                _revoke,
                scan("out", H, PASS, direction="OUT", **VISITOR),
            ],
            [("ALLOW", []), ("WARN", ["PASS_INVALID"])],
            id="pass revoked while the visitor is inside: let out with a warning and the alert",
        ),
        pytest.param(
            [_revoke, scan("in", 0, PASS, **VISITOR)],
            [("DENY", ["PASS_INVALID"])],
            id="a revoked pass still refuses the entry",
        ),
        pytest.param(
            [
                scan("in", 0, PASS, **VISITOR),
                _forget_pass,
                scan("out", H, PASS, direction="OUT", **VISITOR),
            ],
            [("ALLOW", []), ("WARN", ["PASS_INVALID"])],
            id="pass deleted from the register while inside: let out",
        ),
        pytest.param(
            [_revoke, scan("out", 0, PASS, direction="OUT", health_code="RED", **VISITOR)],
            [("DENY", ["HEALTH_CODE_RED", "PASS_INVALID"])],
            id="a RED code still stops the exit: the health rule is not about who is at the gate",
        ),
        pytest.param(
            [scan("out", 0, UNREGISTERED, direction="OUT")],
            [("WARN", ["UNKNOWN_SUBJECT"])],
            id="unregistered resident going out: let out and alerted",
        ),
        pytest.param(
            [scan("out", 0, "anyone", subject_type="UNKNOWN", direction="OUT")],
            [("WARN", ["UNKNOWN_SUBJECT"])],
            id="unknown subject type going out: let out and alerted",
        ),
        pytest.param(
            [scan("out", 0, UNREGISTERED, subject_type="STAFF", direction="OUT")],
            [("WARN", ["UNKNOWN_SUBJECT"])],
            id="unregistered staff going out: let out and alerted",
        ),
        pytest.param(
            [scan("out", 0, "veh-unknown-000000000", direction="OUT", **CAR)],
            [("WARN", ["VEHICLE_UNREGISTERED"])],
            id="unregistered vehicle going out: the barrier opens, alerted",
        ),
        pytest.param(
            [scan("in", 0, "veh-unknown-000000000", **CAR)],
            [("DENY", ["VEHICLE_UNREGISTERED"])],
            id="unregistered vehicle coming in is still refused",
        ),
        pytest.param(
            [scan("out", 0, QUARANTINED, direction="OUT")],
            [("DENY", ["QUARANTINE_BREACH"])],
            id="home observation going out: the breach logic stands",
        ),
        pytest.param(
            [scan("out", 0, ELSEWHERE_Q, direction="OUT")],
            [("DENY", ["QUARANTINE_BREACH", "UNKNOWN_SUBJECT"])],
            id="under home observation in another community: unknown here, the breach still stops",
        ),
        pytest.param(
            [scan("out", 0, ELSEWHERE_H, direction="OUT")],
            [("DENY", ["QUARANTINE_BREACH", "UNKNOWN_SUBJECT"])],
            id="hospitalised in another community's register: stopped for a check in person",
        ),
        pytest.param(
            [scan("in", 0, ELSEWHERE_Q)],
            [("DENY", ["UNKNOWN_SUBJECT"])],
            id="resident of another community coming in: unknown here, refused",
        ),
        pytest.param(
            [scan("a", 0, RES, direction="OUT"), scan("b", H, RES2, direction="OUT")],
            [("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="the community's own exit count still stops an exit",
        ),
        pytest.param(
            [scan("out", 0, RES, direction="OUT", method="FACE")],
            [("DENY", ["FACE_CONSENT_MISSING"])],
            id="a face without consent is refused either way: the method, not the person",
        ),
    ],
)
def test_nobody_is_kept_inside(steps: list[Step], expected: list[tuple[str, list[str]]]) -> None:
    e = engine(entry_limit_scope="HOUSEHOLD")
    got, _ = run_steps(e, steps)
    assert got == expected


@pytest.mark.parametrize(
    ("direction", "action", "zh", "en"),
    [
        pytest.param(
            "OUT",
            "WARN",
            "（外出），处理：放行并提醒",
            "(to go out); action: allow with a warning",
            id="out",
        ),
        pytest.param(
            "IN", "DENY", "（进入），处理：禁止通行", "(to come in); action: deny", id="in"
        ),
    ],
)
def test_let_out_alert_says_what_was_done(direction: str, action: str, zh: str, en: str) -> None:
    e = engine()
    _revoke(e)
    (alert,) = e.on_scans([scan("s", 0, PASS, direction=direction, **VISITOR)]).alerts
    assert alert["alert_type"] == "PASS_INVALID" and alert["severity"] == "WARNING"
    assert (alert["details"]["action"], alert["details"]["direction"]) == (action, direction)
    assert zh in alert["message_zh"] and en in alert["message_en"]
    if direction == "OUT":
        assert "禁止" not in alert["message_zh"] and "deny" not in alert["message_en"]


# ------------------------------------------------------------------ 3. the register's household


@pytest.mark.parametrize(
    ("rules", "steps", "expected", "mismatches"),
    [
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [
                scan("a", 0, RES, direction="OUT", household_id=FORGED),
                scan("b", H, RES2, direction="OUT", household_id=HH),
            ],
            [("ALLOW", ["HOUSEHOLD_MISMATCH"]), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            [("WARNING", "a")],
            id="a forged household does not get past the household quota",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [
                scan("a", 0, RES, direction="OUT", household_id=HH),
                scan("b", H, RES2, direction="OUT", household_id=STALE),
            ],
            [("ALLOW", []), ("DENY", ["HOUSEHOLD_MISMATCH", "ENTRY_LIMIT_EXCEEDED"])],
            [("WARNING", "b")],
            id="a stale code's household: counted for the register's household, and alerted",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [
                scan("a", 0, RES, direction="OUT", household_id=HH3),
                scan("b", H, RES3, direction="OUT"),
            ],
            [("ALLOW", ["HOUSEHOLD_MISMATCH"]), ("ALLOW", [])],
            [("WARNING", "a")],
            id="naming another real household uses none of its quota",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [scan("a", 0, RES, direction="OUT"), scan("b", H, RES2, direction="OUT")],
            [("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            [],
            id="a scan without a household: the register's, no alert",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [
                scan("a", 0, LONER, direction="OUT", household_id=HH),
                scan("b", H, RES, direction="OUT"),
                scan("c", 2 * H, LONER, direction="OUT"),
            ],
            [("ALLOW", ["HOUSEHOLD_MISMATCH"]), ("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            [("WARNING", "a")],
            id="no household in the register: counted per person, the scan's is not taken",
        ),
        pytest.param(
            {"entry_limit_scope": "PERSON"},
            [scan("a", 0, RES, household_id=FORGED)],
            [("ALLOW", ["HOUSEHOLD_MISMATCH"])],
            [("INFO", "a")],
            id="no household quota: the mismatch is recorded (INFO), nothing else changes",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [scan("a", 0, UNREGISTERED, household_id=FORGED)],
            [("DENY", ["UNKNOWN_SUBJECT"])],
            [],
            id="an unregistered resident has no register household to disagree with",
        ),
        pytest.param(
            {"entry_limit_scope": "HOUSEHOLD"},
            [
                scan("a", 0, RES, household_id=FORGED),
                scan("b", MIN, RES, household_id=FORGED),
                scan("c", 2 * MIN, RES, household_id=FORGED),
            ],
            [("ALLOW", ["HOUSEHOLD_MISMATCH"])] * 3,
            [("WARNING", "a")],
            id="one alert per suppression window, not one per scan",
        ),
    ],
)
def test_register_household_decides(
    rules: dict[str, Any],
    steps: list[Step],
    expected: list[tuple[str, list[str]]],
    mismatches: list[tuple[str, str]],
) -> None:
    got, out = run_steps(engine(**rules), steps)
    assert got == expected
    found = [a for a in out.alerts if a["alert_type"] == "HOUSEHOLD_MISMATCH"]
    assert [(a["severity"], a["source_event_ids"][0]) for a in found] == mismatches
    for alert in found:
        text = repr(alert["details"]) + alert["message_zh"] + alert["message_en"]
        assert FORGED not in text and HH not in text and alert["subject_id"] in (RES, RES2, LONER)


def test_household_mismatch_alert_id_is_deterministic() -> None:
    def run() -> list[str]:
        e = engine(entry_limit_scope="HOUSEHOLD")
        out = e.on_scans([scan("a", 0, RES, household_id=STALE)])
        return [a["alert_id"] for a in out.alerts]

    assert run() == run() and len(run()) == 1


# ------------------------------------------------------------------ 4. returning home


@pytest.mark.parametrize(
    ("rules", "steps", "expected"),
    [
        pytest.param(
            {"entry_limit_direction": "ANY", "entry_limit_count": 1},
            [
                scan("out", 0, RES, direction="OUT"),
                scan("home", 2 * H, RES, direction="IN"),
                scan("out2", 24 * H, RES, direction="OUT"),
            ],
            [("ALLOW", []), ("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="ANY: coming home over the limit is let in (and counted); the next exit is stopped",
        ),
        pytest.param(
            {"entry_limit_direction": "ANY", "entry_limit_count": 2},
            [
                scan("out", 0, RES, direction="OUT"),
                scan("home", 2 * H, RES, direction="IN"),
                scan("out2", 24 * H, RES, direction="OUT"),
            ],
            [("ALLOW", []), ("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="ANY counts both passes: a count of 2 is one trip out and back",
        ),
        pytest.param(
            {"entry_limit_direction": "ANY", "entry_limit_count": 2},
            [
                scan("home", 0, RES, direction="IN"),
                scan("out", 2 * H, RES2, direction="OUT"),
                scan("home2", 4 * H, RES2, direction="IN"),
            ],
            [("ALLOW", []), ("ALLOW", []), ("ALLOW", [])],
            id="ANY: the household's third pass is a return home: let in",
        ),
        pytest.param(
            {"entry_limit_direction": "IN", "entry_limit_count": 1},
            [scan("a", 0, RES), scan("b", 2 * H, RES2)],
            [("ALLOW", []), ("WARN", ["ENTRY_LIMIT_EXCEEDED"])],
            id="IN limit: the entry over it is let in with a warning (the guideline's prompt)",
        ),
        pytest.param(
            {"entry_limit_direction": "IN", "entry_limit_count": 1, "entry_limit_action": "ALLOW"},
            [scan("a", 0, RES), scan("b", 2 * H, RES2)],
            [("ALLOW", []), ("ALLOW", ["ENTRY_LIMIT_EXCEEDED"])],
            id="IN limit with action ALLOW: recorded, let in",
        ),
        pytest.param(
            {"entry_limit_direction": "OUT", "entry_limit_count": 1},
            [
                scan("out", 0, RES, direction="OUT"),
                scan("home", H, RES),
                scan("home2", 2 * H, RES2),
            ],
            [("ALLOW", []), ("ALLOW", []), ("ALLOW", [])],
            id="OUT limit: entries are not counted",
        ),
        pytest.param(
            {"entry_limit_direction": "ANY", "entry_limit_count": 1},
            [scan("out", 0, RES, direction="OUT"), scan("home", H, RES, health_code="RED")],
            [("ALLOW", []), ("DENY", ["HEALTH_CODE_RED"])],
            id="other rules still refuse an entry: only the count never does",
        ),
    ],
)
def test_returning_home_is_never_refused_by_a_count(
    rules: dict[str, Any], steps: list[Step], expected: list[tuple[str, list[str]]]
) -> None:
    got, _ = run_steps(engine(entry_limit_scope="HOUSEHOLD", **rules), steps)
    assert got == expected


# ------------------------------------------------------------------ 5. re-scans are one pass


def _every(step_s: int, n: int, first: int = 0, subject: str = RES, **fields: Any) -> list[Step]:
    fields.setdefault("direction", "OUT")
    return [scan(f"r{first + i}", (first + i * step_s) * S, subject, **fields) for i in range(n)]


@pytest.mark.parametrize(
    ("rules", "steps", "expected"),
    [
        pytest.param(
            {},
            _every(20, 4),
            [("ALLOW", [])] * 4,
            id="re-scanned every 20 s at one gate: one pass, the same decision every time",
        ),
        pytest.param(
            {},
            [*_every(20, 4), scan("later", 2 * MIN + 60 * S, RES, direction="OUT")],
            [("ALLOW", [])] * 4 + [("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="a scan 60 s after the last re-scan is a new pass",
        ),
        pytest.param(
            {},
            _every(40, 3),
            [("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"]), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="every 40 s (beyond the 30 s window): separate passes",
        ),
        pytest.param(
            {},
            [scan("earlier", -H, RES, direction="OUT"), *_every(20, 4)],
            [("ALLOW", [])] + [("DENY", ["ENTRY_LIMIT_EXCEEDED"])] * 4,
            id="a refused pass re-scanned is refused again, never counted",
        ),
        pytest.param(
            {"entry_limit_count": 2},
            [
                *_every(20, 4),
                scan("b", H, RES, direction="OUT"),
                scan("c", 2 * H, RES, direction="OUT"),
            ],
            [("ALLOW", [])] * 5 + [("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="count 2: four re-scans used one pass of the two",
        ),
        pytest.param(
            {},
            [
                scan("a", 0, RES, direction="OUT"),
                scan("b", 20 * S, RES, direction="OUT", gate_id="G-02"),
            ],
            [("ALLOW", []), ("DENY", ["ENTRY_LIMIT_EXCEEDED"])],
            id="a scan at another gate is another pass",
        ),
        pytest.param(
            {},
            [
                *_every(20, 4, subject=PASS, direction="IN", **VISITOR),
                scan("again", H, PASS, **VISITOR),
            ],
            [("ALLOW", [])] * 4 + [("DENY", ["PASS_INVALID"])],
            id="visitor pass of one entry re-scanned every 20 s: one entry used",
        ),
    ],
)
def test_rescans_within_the_dedupe_window_are_one_pass(
    rules: dict[str, Any], steps: list[Step], expected: list[tuple[str, list[str]]]
) -> None:
    got, _ = run_steps(engine(entry_limit_scope="PERSON", **rules), steps)
    assert got == expected


# ------------------------------------------------------------------ 7. unidentified fever


def _fever_run(batches: list[list[tuple[str, dict[str, Any]]]]) -> tuple[Output, RuleEngine]:
    e = engine()
    total = Output()
    for batch in batches:
        out = e.on_events([(kind, ev, None) for kind, ev in batch])
        total.decisions += out.decisions
        total.alerts += out.alerts
    return total, e


FACE: dict[str, Any] = {"method": "FACE", "face_consent": False}
LATER = [("scan", scan("later", 6 * MIN, RES2))]  # event time past the lateness
MUCH_LATER = [("scan", scan("much-later", 11 * MIN, RES3))]  # past the recheck window too


@pytest.mark.parametrize(
    ("batches", "reasons", "alerts"),
    [
        pytest.param(
            [[("scan", scan("f", 0, temperature_c=38.8, **FACE))], LATER],
            ["FACE_CONSENT_MISSING", "FEVER_RECHECK"],
            [("FACE_CONSENT_MISSING", None), ("FEVER_RECHECK", "38.8")],
            id="face without consent at 38.8 °C: the fever is screened without a subject",
        ),
        pytest.param(
            [[("scan", scan("f", 0, temperature_c=38.8, **FACE))], LATER, MUCH_LATER],
            ["FACE_CONSENT_MISSING", "FEVER_RECHECK"],
            [
                ("FACE_CONSENT_MISSING", None),
                ("FEVER_RECHECK", "38.8"),
                ("FEVER_RECHECK_MISSED", "38.8"),
            ],
            id="no recheck naming anyone: the recheck is missed, staff look for the person",
        ),
        pytest.param(
            [[("scan", scan("f", 0, temperature_c=36.5, **FACE))], LATER],
            ["FACE_CONSENT_MISSING"],
            [("FACE_CONSENT_MISSING", None)],
            id="face without consent, normal temperature: no fever alert",
        ),
        pytest.param(
            [[("scan", scan("f", 0, temperature_c=33.0, **FACE))], LATER],
            ["FACE_CONSENT_MISSING", "TEMPERATURE_IMPLAUSIBLE"],
            [("FACE_CONSENT_MISSING", None), ("TEMPERATURE_IMPLAUSIBLE", "33.0")],
            id="face without consent, implausible reading: a re-measure is asked",
        ),
        pytest.param(
            [
                [("scan", scan("f", 0, temperature_c=38.8, **FACE))],
                [("reading", reading("r", 0, 38.8, None))],
                LATER,
            ],
            ["FACE_CONSENT_MISSING", "FEVER_RECHECK"],
            [("FACE_CONSENT_MISSING", None), ("FEVER_RECHECK", "38.8")],
            id="the gate's subject-less reading of the same instant is the same measurement",
        ),
        pytest.param(
            [
                [("reading", reading("r", 0, 38.8, None))],
                [("scan", scan("f", 0, temperature_c=38.8, **FACE))],
                LATER,
            ],
            ["FACE_CONSENT_MISSING", "FEVER_RECHECK"],
            [("FACE_CONSENT_MISSING", None), ("FEVER_RECHECK", "38.8")],
            id="the same, the reading arriving first",
        ),
        pytest.param(
            [LATER, [("scan", scan("f", -10 * MIN, temperature_c=38.8, **FACE))]],
            ["FACE_CONSENT_MISSING", "FEVER_RECHECK"],
            [
                ("FACE_CONSENT_MISSING", None),
                ("FEVER_RECHECK", "38.8"),
                ("FEVER_RECHECK_MISSED", "38.8"),
            ],
            id="a face scan 16 min late: its fever is screened, its recheck window long gone",
        ),
    ],
)
def test_unidentified_fever_is_screened(
    batches: list[list[tuple[str, dict[str, Any]]]],
    reasons: list[str],
    alerts: list[tuple[str, str | None]],
) -> None:
    out, _ = _fever_run(batches)
    (face,) = [d for d in out.decisions if d["event_id"] == "f"]
    assert (face["decision"], face["reasons"], face["subject_id"]) == ("DENY", reasons, "")
    got = [(a["alert_type"], a["details"].get("temperature_c")) for a in out.alerts]
    assert got == alerts
    assert all(a["subject_id"] is None for a in out.alerts)
    text = repr(face) + repr(out.alerts)
    assert RES not in text and RES[:4] + "****" not in text


def test_unidentified_fever_alert_ids_do_not_depend_on_arrival() -> None:
    face = ("scan", scan("f", 0, temperature_c=38.8, **FACE))
    gate = ("reading", reading("r", 0, 38.8, None))
    a, _ = _fever_run([[face], [gate], LATER, MUCH_LATER])
    b, _ = _fever_run([[gate], [face], LATER, MUCH_LATER])
    assert {x["alert_id"] for x in a.alerts} == {x["alert_id"] for x in b.alerts}


# ------------------------------------------------------------------ 8. numbers agree with words

# rechecks read as a Fahrenheit device converts them (99.1 °F = 37.28 °C), and the edges of 0.1
RECHECKS = [37.24, 37.25, 37.249999999999996, 37.28, 37.29999923706055, 37.3, 37.30000000000001]


@pytest.mark.parametrize(
    ("recheck", "alert_type", "zh", "en"),
    [
        pytest.param(
            37.24,
            "FEVER_CLEARED",
            "37.2°C，低于 37.3°C",
            "37.2 °C, below 37.3 °C",
            id="37.24 reads 37.2: cleared, below 37.3",
        ),
        pytest.param(
            37.28,
            "FEVER_CONFIRMED",
            "复测 37.3°C",
            "read 37.3 °C",
            id="37.28 (99.1 °F) reads 37.3: at the threshold, confirmed",
        ),
        pytest.param(
            37.25,
            "FEVER_CONFIRMED",
            "复测 37.3°C",
            "read 37.3 °C",
            id="37.25 rounds half up: at the threshold",
        ),
        pytest.param(
            37.29999923706055,
            "FEVER_CONFIRMED",
            "复测 37.3°C",
            "read 37.3 °C",
            id="a float32 37.3 is 37.3",
        ),
        pytest.param(
            37.3, "FEVER_CONFIRMED", "复测 37.3°C", "read 37.3 °C", id="37.3 exactly: confirmed"
        ),
    ],
)
def test_fever_recheck_words_match_the_rule(
    recheck: float, alert_type: str, zh: str, en: str
) -> None:
    out, _ = _fever_run(
        [[("reading", reading("a", 0, 37.6))], [("reading", reading("b", MIN, recheck))]]
    )
    (alert,) = [a for a in out.alerts if a["alert_type"] != "FEVER_RECHECK"]
    assert alert["alert_type"] == alert_type
    assert zh in alert["message_zh"] and en in alert["message_en"]


_NUMBER = r"(\d+\.\d)\s?°C"


@pytest.mark.parametrize("recheck", RECHECKS)
def test_cleared_message_never_reads_below_an_equal_threshold(recheck: float) -> None:
    out, _ = _fever_run(
        [[("reading", reading("a", 0, 37.6))], [("reading", reading("b", MIN, recheck))]]
    )
    for alert in out.alerts:
        if alert["alert_type"] != "FEVER_CLEARED":
            continue
        for text, word in ((alert["message_zh"], "低于"), (alert["message_en"], "below")):
            value, threshold = (float(x) for x in re.findall(_NUMBER, text)[-2:])
            assert word in text and value < threshold, text


@pytest.mark.parametrize(
    ("temp", "expected", "zh"),
    [
        pytest.param(
            37.28,
            ["FEVER_REPORTED"],
            "37.3°C（≥37.3°C）",
            id="self-reported 37.28 reads 37.3: ≥ 37.3, a fever",
        ),
        pytest.param(37.24, [], "", id="self-reported 37.24 reads 37.2: no fever"),
        pytest.param(
            43.04, ["FEVER_REPORTED"], "43.0°C", id="43.04 reads 43.0: within the plausible range"
        ),
        pytest.param(
            43.06,
            ["TEMPERATURE_IMPLAUSIBLE"],
            "43.1°C 超出合理范围（34.0–43.0°C）",
            id="43.06 reads 43.1: outside",
        ),
    ],
)
def test_reported_fever_words_match_the_rule(temp: float, expected: list[str], zh: str) -> None:
    e = engine()
    out = e.on_reports([report("r", 0, temp)])
    assert [a["alert_type"] for a in out.alerts] == expected
    if expected:
        assert zh in out.alerts[0]["message_zh"]


@pytest.mark.parametrize(
    ("temp", "kind", "shown"),
    [
        pytest.param(33.96, NORMAL, "34.0", id="33.96 shows 34.0 and is plausible"),
        pytest.param(33.94, IMPLAUSIBLE, "33.9", id="33.94 shows 33.9 and is implausible"),
        pytest.param(37.28, HIGH, "37.3", id="37.28 shows 37.3 and is high"),
        pytest.param(37.24, NORMAL, "37.2", id="37.24 shows 37.2 and is normal"),
    ],
)
def test_the_rule_compares_what_the_message_shows(temp: float, kind: int, shown: str) -> None:
    assert fmt_c(temp) == shown
    assert classify(temp, DEFAULT_RULES) == kind
    assert (tenths(temp) >= tenths(DEFAULT_RULES.fever_threshold_c)) == (float(shown) >= 37.3)


def test_clock_skew_message_never_reads_ahead_by_the_allowance() -> None:
    e = engine()
    ev = scan("s", 0)
    out = e.on_events([("scan", ev, T0 - 120_400)])  # stamped 120.4 s after its Kafka time
    (alert,) = [a for a in out.alerts if a["alert_type"] == "DEVICE_CLOCK_SKEW"]
    assert alert["details"]["ahead_s"] == "121" and alert["details"]["max_skew_s"] == "120"
    assert "快 121 秒（允许 120 秒）" in alert["message_zh"]


def test_edge_fallback_compares_like_the_core() -> None:
    replica = Replica(residents={RES: _resident(RES, HH)}, vehicles={}, passes={}, rules={})
    decision, reasons = fallback_decision(
        scan("s", 0, temperature_c=37.28), replica, FallbackPolicy()
    )
    assert (decision, reasons) == ("RECHECK", ("FEVER_RECHECK",))


def test_every_template_with_a_comparison_word_is_checked() -> None:
    """The templates that compare (a threshold, a range, an allowance) are the ones this module
    checks: a new one must be added here and get a case above."""
    words = re.compile(r"低于|高于|超过|超出|以上|不足|≥|≤|below|above|more than|outside|ahead")
    comparing = {t for t, (zh, en) in TEMPLATES.items() if words.search(zh + en)}
    assert comparing >= {"FEVER_CLEARED", "FEVER_REPORTED", "TEMPERATURE_IMPLAUSIBLE"}
    checked = {
        "FEVER_CLEARED",  # value < threshold, both shown at 0.1 °C
        "FEVER_REPORTED",  # value ≥ threshold
        "TEMPERATURE_IMPLAUSIBLE",  # outside [min, max], both included
        "DEVICE_SILENT",  # "more than N min": gap > device_silent_s
        "DEVICE_CLOCK_SKEW",  # ahead_s rounded up: skewed is > max_skew_s
        "ENTRY_LIMIT_EXCEEDED",  # "passed N times (limit L)": fires at N ≥ L, this pass is one more
        "CLUSTER_SUSPECTED",  # window early warning (issue 20): checked by its own tests
        "OCCUPANCY_OVER_CAPACITY",
        "GATE_ANOMALY",
    }
    assert comparing <= checked, sorted(comparing - checked)
    for alert_type in comparing:
        zh, en = render(alert_type, {})
        assert zh and en
