"""Gate access checks as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from streams.rules.config import DEFAULT_RULES, CommunityRules
from streams.rules.gate_access import (
    check_curfew,
    check_face_consent,
    check_health_code,
    check_quarantine,
    check_resident,
    check_staff,
    check_vehicle,
    check_visitor_pass,
    in_curfew,
    strictest,
)

CID = "91350100M000100Y43"
OTHER = "91110105MA01234567"
T = 1_700_000_000_000


def _kind(finding: Any) -> tuple[str, str] | None:
    return None if finding is None else (finding.action, finding.alert_type)


@pytest.mark.parametrize(
    ("code", "rules", "expected"),
    [
        pytest.param("GREEN", DEFAULT_RULES, None, id="GREEN code passes"),
        pytest.param("UNKNOWN", DEFAULT_RULES, None, id="UNKNOWN code passes"),
        pytest.param("RED", DEFAULT_RULES, ("DENY", "HEALTH_CODE_RED"), id="RED code denies"),
        pytest.param(
            "YELLOW", DEFAULT_RULES, ("WARN", "HEALTH_CODE_YELLOW"), id="YELLOW code warns"
        ),
        pytest.param(
            "YELLOW",
            CommunityRules(yellow_code_action="DENY"),
            ("DENY", "HEALTH_CODE_YELLOW"),
            id="YELLOW code takes community action",
        ),
    ],
)
def test_health_code(code: str, rules: CommunityRules, expected: Any) -> None:
    assert _kind(check_health_code(code, rules)) == expected


@pytest.mark.parametrize(
    ("direction", "status", "expected"),
    [
        pytest.param(
            "OUT",
            "HOME_OBSERVATION",
            ("DENY", "QUARANTINE_BREACH"),
            id="quarantined resident going out is a breach",
        ),
        pytest.param(
            "OUT",
            "CENTRALIZED_ISOLATION",
            ("DENY", "QUARANTINE_BREACH"),
            id="isolated resident going out is a breach",
        ),
        pytest.param("IN", "HOME_OBSERVATION", None, id="quarantined resident coming in is fine"),
        pytest.param("OUT", "NORMAL", None, id="normal resident going out is fine"),
        pytest.param("OUT", "RECOVERED", None, id="recovered resident going out is fine"),
    ],
)
def test_quarantine(direction: str, status: str, expected: Any) -> None:
    resident = {"resident_id": "r", "community_id": CID, "status": status}
    assert _kind(check_quarantine(direction, resident)) == expected


@pytest.mark.parametrize(
    ("resident", "expected"),
    [
        pytest.param({"community_id": CID}, None, id="registered resident passes"),
        pytest.param(None, ("DENY", "UNKNOWN_SUBJECT"), id="unregistered resident is unknown"),
        pytest.param(
            {"community_id": OTHER},
            ("DENY", "UNKNOWN_SUBJECT"),
            id="resident of another community is unknown here",
        ),
    ],
)
def test_resident(resident: dict[str, Any] | None, expected: Any) -> None:
    assert _kind(check_resident(CID, resident)) == expected


def test_staff_must_be_registered() -> None:
    assert check_staff({"community_id": OTHER}) is None
    assert _kind(check_staff(None)) == ("DENY", "UNKNOWN_SUBJECT")


def _pass(**overrides: Any) -> dict[str, Any]:
    record = {
        "pass_id": "p1",
        "community_id": CID,
        "host_resident_id": "r1",
        "valid_from": T - 3_600_000,
        "valid_until": T + 3_600_000,
        "max_entries": 2,
        "revoked": False,
    }
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    ("direction", "record", "used", "why"),
    [
        pytest.param("IN", _pass(), 0, None, id="valid pass admits visitor"),
        pytest.param("IN", None, 0, "unknown_pass", id="unknown pass is invalid"),
        pytest.param("IN", _pass(revoked=True), 0, "revoked", id="revoked pass is invalid"),
        pytest.param("OUT", _pass(revoked=True), 0, "revoked", id="revoked pass invalid going out"),
        pytest.param(
            "IN", _pass(community_id=OTHER), 0, "wrong_community", id="pass of another community"
        ),
        pytest.param("IN", _pass(valid_from=T + 1), 0, "not_yet_valid", id="pass not valid yet"),
        pytest.param("IN", _pass(valid_until=T - 1), 0, "expired", id="expired pass stops entry"),
        pytest.param("OUT", _pass(valid_until=T - 1), 0, None, id="expired pass still lets out"),
        pytest.param("IN", _pass(), 2, "entries_used_up", id="entries used up"),
        pytest.param("OUT", _pass(), 2, None, id="used-up pass still lets out"),
        pytest.param("IN", _pass(max_entries=None), 99, None, id="no max entries is unlimited"),
    ],
)
def test_visitor_pass(
    direction: str, record: dict[str, Any] | None, used: int, why: str | None
) -> None:
    finding = check_visitor_pass(CID, direction, T, record, used)
    if why is None:
        assert finding is None
    else:
        assert finding is not None
        assert (finding.action, finding.alert_type, finding.details["why"]) == (
            "DENY",
            "PASS_INVALID",
            why,
        )


@pytest.mark.parametrize(
    ("direction", "record", "why"),
    [
        pytest.param("IN", {"community_id": CID, "valid_until": None}, None, id="vehicle valid"),
        pytest.param("IN", None, "not_registered", id="unregistered vehicle denied"),
        pytest.param(
            "IN", {"community_id": OTHER, "valid_until": None}, "not_registered", id="other site"
        ),
        pytest.param(
            "IN", {"community_id": CID, "valid_until": T - 1}, "expired", id="expired vehicle"
        ),
        pytest.param(
            "OUT", {"community_id": CID, "valid_until": T - 1}, None, id="expired vehicle leaves"
        ),
    ],
)
def test_vehicle(direction: str, record: dict[str, Any] | None, why: str | None) -> None:
    finding = check_vehicle(CID, direction, T, record)
    assert (None if finding is None else finding.details["why"]) == why


@pytest.mark.parametrize(
    ("scan", "resident", "refused"),
    [
        pytest.param({"method": "QR"}, None, False, id="QR scan needs no face consent"),
        pytest.param(
            {"method": "FACE", "face_consent": True}, None, False, id="consent on scan suffices"
        ),
        pytest.param(
            {"method": "FACE", "face_consent": False},
            {"face_consent": True},
            False,
            id="consent on resident record suffices",
        ),
        pytest.param(
            {"method": "FACE", "face_consent": False},
            {"face_consent": False},
            True,
            id="face without consent is refused",
        ),
        pytest.param({"method": "FACE"}, None, True, id="face of unknown person is refused"),
    ],
)
def test_face_consent(scan: dict[str, Any], resident: dict[str, Any] | None, refused: bool) -> None:
    assert (check_face_consent(scan, resident) is not None) == refused


@pytest.mark.parametrize(
    ("minute", "start", "end", "inside"),
    [
        pytest.param(120, 1380, 360, True, id="curfew wraps midnight: 02:00 inside 23-06"),
        pytest.param(1400, 1380, 360, True, id="curfew wraps midnight: 23:20 inside"),
        pytest.param(360, 1380, 360, False, id="curfew end is exclusive"),
        pytest.param(720, 1380, 360, False, id="noon outside wrapping curfew"),
        pytest.param(600, 540, 1020, True, id="daytime curfew inside"),
        pytest.param(1020, 540, 1020, False, id="daytime curfew end exclusive"),
    ],
)
def test_in_curfew(minute: int, start: int, end: int, inside: bool) -> None:
    assert in_curfew(minute, start, end) == inside


def test_curfew_uses_community_action() -> None:
    rules = CommunityRules(curfew_start_minute=1380, curfew_end_minute=360, curfew_action="DENY")
    finding = check_curfew(30, rules)
    assert finding is not None and finding.action == "DENY"
    assert finding.details["local_time"] == "00:30"
    assert check_curfew(30, DEFAULT_RULES) is None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param("ALLOW", "WARN", "WARN", id="WARN beats ALLOW"),
        pytest.param("RECHECK", "WARN", "RECHECK", id="RECHECK beats WARN"),
        pytest.param("RECHECK", "DENY", "DENY", id="DENY beats RECHECK"),
        pytest.param("ALLOW", "ALLOW", "ALLOW", id="ALLOW with ALLOW"),
    ],
)
def test_strictest(a: str, b: str, expected: str) -> None:
    assert strictest(a, b) == expected == strictest(b, a)
