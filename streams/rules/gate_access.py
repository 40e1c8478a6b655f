"""Gate access checks: pure functions from a scan (and the reference records it needs) to at most
one :class:`Finding` each. The engine combines them: the strictest action wins
(DENY > RECHECK > WARN > ALLOW) and the decision's reasons name every rule that fired.

Subject rules by ``subject_type``:

* RESIDENT: the resident must be registered in this community (else UNKNOWN_SUBJECT); one under
  HOME_OBSERVATION or CENTRALIZED_ISOLATION scanning OUT is a QUARANTINE_BREACH.
* STAFF: looked up in the resident register (staff are registered like residents, possibly
  for another community); unknown → UNKNOWN_SUBJECT; under observation or isolation they are
  stopped going out like any resident.
* HOSPITALIZED (resident or staff record): stopped in both directions (QUARANTINE_BREACH) — the
  holder should be in hospital, so staff check who is at the gate.
* VISITOR: ``subject_id`` is the pass_id. Unknown, revoked or other-community passes are invalid in
  both directions; not-yet-valid, expired and used-up passes only stop entries (IN) — a visitor
  whose pass ran out is let out.
* VEHICLE: ``subject_id`` is the vehicle_id. Unknown or other-community vehicles are invalid both
  ways; an expired registration (``valid_until`` < event time) only stops entries.
* UNKNOWN: always UNKNOWN_SUBJECT.

Nobody is kept inside (issue 20, behaviour 2): the findings about *who* is at the gate
(UNKNOWN_SUBJECT, PASS_INVALID, VEHICLE_UNREGISTERED — ``LET_OUT``) refuse an entry, and on the
way out they let the subject go with a warning and the same alert (``let_out``): a visitor whose
pass was revoked while inside leaves. What stops an exit for the sake of others stands: a
QUARANTINE_BREACH (home observation, isolation, hospital — also of a resident registered in
another community), a RED code or a YELLOW code the community denies, the community's own exit
count and curfew; and a face without consent is refused either way (the method is refused,
not the person: they scan their code).

A FACE scan without consent (on the scan or on the resident record) is a rejection record only:
no other rule runs on the face-derived identity and the decision keeps no subject id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from streams.rules.alerts import (
    CRITICAL,
    CURFEW_VIOLATION,
    FACE_CONSENT_MISSING,
    HEALTH_CODE_RED,
    HEALTH_CODE_YELLOW,
    PASS_INVALID,
    QUARANTINE_BREACH,
    UNKNOWN_SUBJECT,
    VEHICLE_UNREGISTERED,
    WARNING,
)
from streams.rules.config import CommunityRules
from streams.rules.timeutil import format_minute

ALLOW = "ALLOW"
WARN = "WARN"
RECHECK = "RECHECK"
DENY = "DENY"
ACTION_RANK: dict[str, int] = {ALLOW: 0, WARN: 1, RECHECK: 2, DENY: 3}
QUARANTINE_STATUSES = frozenset({"HOME_OBSERVATION", "CENTRALIZED_ISOLATION"})

Record = Mapping[str, Any]


class Finding(NamedTuple):
    """A rule that fired on a scan: the action it asks for and the alert it raises."""

    action: str
    alert_type: str
    severity: str
    details: dict[str, str]


def strictest(a: str, b: str) -> str:
    """The stricter of two decisions."""
    return a if ACTION_RANK[a] >= ACTION_RANK[b] else b


def check_health_code(health_code: str | None, rules: CommunityRules) -> Finding | None:
    """RED denies; YELLOW gets the community's ``yellow_code_action``."""
    if health_code == "RED":
        return Finding(DENY, HEALTH_CODE_RED, CRITICAL, {"health_code": "RED"})
    if health_code == "YELLOW":
        action = rules.yellow_code_action
        return Finding(
            action, HEALTH_CODE_YELLOW, WARNING, {"health_code": "YELLOW", "action": action}
        )
    return None


def check_face_consent(scan: Record, resident: Record | None) -> Finding | None:
    """A FACE scan needs consent on the scan or on the resident record."""
    if scan.get("method") != "FACE" or scan.get("face_consent"):
        return None
    if resident is not None and resident.get("face_consent"):
        return None
    return Finding(DENY, FACE_CONSENT_MISSING, WARNING, {"method": "FACE"})


#: findings about who is at the gate: they refuse entries, never exits (``let_out``)
LET_OUT: frozenset[str] = frozenset({UNKNOWN_SUBJECT, PASS_INVALID, VEHICLE_UNREGISTERED})


def let_out(found: Finding, direction: str) -> Finding:
    """Nobody is kept inside: a ``LET_OUT`` finding on an exit lets the subject out with a
    warning (WARN) and its alert. Its details name the ``direction`` and the ``action`` taken
    (the message says "action: allow with a warning", not "denied")."""
    if found.alert_type not in LET_OUT:
        return found
    details = {**found.details, "direction": direction}
    if direction == "OUT" and ACTION_RANK[found.action] > ACTION_RANK[WARN]:
        details["action"] = WARN
        return found._replace(action=WARN, details=details)
    return found._replace(details=details)


def _unknown(subject_type: str) -> Finding:
    return Finding(DENY, UNKNOWN_SUBJECT, WARNING, {"subject_type": subject_type, "action": DENY})


def check_resident(community_id: str, resident: Record | None) -> Finding | None:
    """A resident must be registered in this community."""
    if resident is None or resident.get("community_id") != community_id:
        return _unknown("RESIDENT")
    return None


def check_staff(staff: Record | None) -> Finding | None:
    """Staff must be in the register (any community: staff may serve several)."""
    return _unknown("STAFF") if staff is None else None


def check_unknown_type() -> Finding:
    return _unknown("UNKNOWN")


def check_quarantine(
    direction: str, resident: Record | None, observation_over: bool = False
) -> Finding | None:
    """A resident (or staff member) under home observation or centralized isolation must not go
    out; once a home observation's period is over and it was completed clean
    (``observation_over``), the register is only late, and the pass is not stopped. A
    HOSPITALIZED person's code at the gate, either way, is someone else's use of it or a
    discharge the register does not know: stopped for a check in person."""
    if resident is None:
        return None
    status = resident.get("status")
    if status == "HOSPITALIZED":
        return Finding(
            DENY, QUARANTINE_BREACH, CRITICAL, {"status": "HOSPITALIZED", "direction": direction}
        )
    if direction != "OUT":
        return None
    if status in QUARANTINE_STATUSES:
        if observation_over and status == "HOME_OBSERVATION":
            return None
        return Finding(
            DENY, QUARANTINE_BREACH, CRITICAL, {"status": str(status), "direction": direction}
        )
    return None


def pass_problem(
    community_id: str, direction: str, t: int, visitor_pass: Record | None, entries_used: int
) -> str | None:
    """Why a visitor pass does not let this scan through, or None if it does."""
    if visitor_pass is None:
        return "unknown_pass"
    if visitor_pass.get("community_id") != community_id:
        return "wrong_community"
    if visitor_pass.get("revoked"):
        return "revoked"
    if direction != "IN":
        return None
    valid_from = visitor_pass.get("valid_from")
    if valid_from is not None and t < valid_from:
        return "not_yet_valid"
    valid_until = visitor_pass.get("valid_until")
    if valid_until is not None and t > valid_until:
        return "expired"
    max_entries = visitor_pass.get("max_entries")
    if max_entries is not None and entries_used >= max_entries:
        return "entries_used_up"
    return None


def check_visitor_pass(
    community_id: str, direction: str, t: int, visitor_pass: Record | None, entries_used: int
) -> Finding | None:
    """PASS_INVALID (details ``why``) unless the pass lets this scan through. ``entries_used``
    counts the IN passes already made on it (0 for a repeat of a counted pass)."""
    why = pass_problem(community_id, direction, t, visitor_pass, entries_used)
    if why is None:
        return None
    details = {"why": why, "direction": direction, "action": DENY}
    if why == "entries_used_up" and visitor_pass is not None:
        details["entries_used"] = str(entries_used)
        details["max_entries"] = str(visitor_pass.get("max_entries"))
    return Finding(DENY, PASS_INVALID, WARNING, details)


def check_vehicle(
    community_id: str, direction: str, t: int, vehicle: Record | None
) -> Finding | None:
    """VEHICLE_UNREGISTERED for unknown vehicles, and for expired ones entering."""
    if vehicle is None or vehicle.get("community_id") != community_id:
        why = "not_registered"
    else:
        valid_until = vehicle.get("valid_until")
        if direction != "IN" or valid_until is None or valid_until >= t:
            return None
        why = "expired"
    return Finding(
        DENY, VEHICLE_UNREGISTERED, WARNING, {"why": why, "direction": direction, "action": DENY}
    )


def in_curfew(minute: int, start: int, end: int) -> bool:
    """Whether local ``minute`` is in [start, end), wrapping midnight when start > end."""
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def check_curfew(local_minute: int, rules: CommunityRules) -> Finding | None:
    """CURFEW_VIOLATION with ``curfew_action`` for a pass inside the community's curfew."""
    start = rules.curfew_start_minute
    end = rules.curfew_end_minute
    if start is None or end is None or start == end or not in_curfew(local_minute, start, end):
        return None
    return Finding(
        rules.curfew_action,
        CURFEW_VIOLATION,
        WARNING,
        {
            "local_time": format_minute(local_minute),
            "curfew": format_minute(start) + "–" + format_minute(end),
            "action": rules.curfew_action,
        },
    )
