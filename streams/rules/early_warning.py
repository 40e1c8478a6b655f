"""Early warning over windows (issue 20, the guideline's 早发现): pure rules, no state, no I/O.

Three alerts look across a community over a window of event time instead of at one person or one
device. Their state objects (``streams/state/clusters.py``, ``occupancy.py``, ``gate_rates.py``)
decide them on *sealed* event time — the community's time minus the allowed lateness, where the
recheck windows close too — so every event that can still arrive in order has arrived, and the
same events give the same alerts in any arrival order (docs/rules.md):

* **CLUSTER_SUSPECTED** (聚集性疫情预警, CRITICAL): ``cluster_min_cases`` different persons of one
  scope (``cluster_scope``: building, household or community) with a *case* — a confirmed fever
  at a gate, a self-reported fever or self-reported symptoms — within ``cluster_window_s``.
* **OCCUPANCY_OVER_CAPACITY** (限流, WARNING): persons inside (IN − OUT of persons let through,
  never below zero, carried across midnight) above ``capacity_persons`` at the end of an
  event-time minute; cleared (the same alert, status CLEARED) when back at or below it.
* **GATE_ANOMALY** (WARNING): at the end of an event-time minute, a gate's refusals in the last
  ``gate_anomaly_window_s`` ≥ max(``gate_anomaly_min_refusals``, ``gate_anomaly_factor`` × its
  refusals in the ``gate_anomaly_baseline_s`` before that window, scaled to the window's length).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.gate_access import DENY
from streams.rules.health_reports import reported_fever, symptoms_severity

MINUTE_MS = 60_000

# -- cases of a suspected cluster --------------------------------------------------------------
CASE_FEVER_CONFIRMED = "FEVER_CONFIRMED"
CASE_FEVER_REPORTED = "FEVER_REPORTED"
CASE_SYMPTOMS = "SYMPTOMS_REPORTED"

BUILDING, HOUSEHOLD, COMMUNITY = "BUILDING", "HOUSEHOLD", "COMMUNITY"


def report_case(report: Mapping[str, Any], rules: CommunityRules) -> str | None:
    """The kind of case a health report is (a reported fever before symptoms), or None."""
    if reported_fever(report.get("temperature_c"), rules):
        return CASE_FEVER_REPORTED
    if symptoms_severity(report.get("symptoms") or ()) is not None:
        return CASE_SYMPTOMS
    return None


def cluster_scope(
    rules: CommunityRules, community_id: str, resident: Mapping[str, Any] | None
) -> tuple[str, str] | None:
    """(scope, key) a person's case counts in, or None when the scope is unknown for them (a
    visitor or unregistered subject counts only at community scope). At BUILDING scope a
    resident without a ``building_id`` in the register counts in their household."""
    scope = rules.cluster_scope
    if scope == COMMUNITY:
        return COMMUNITY, community_id
    if resident is None or resident.get("community_id", community_id) != community_id:
        return None
    if scope == BUILDING and resident.get("building_id"):
        return BUILDING, str(resident["building_id"])
    household = resident.get("household_id")
    return (HOUSEHOLD, str(household)) if household else None


def cluster_enabled(rules: CommunityRules) -> bool:
    return rules.cluster_min_cases > 0 and rules.cluster_window_s > 0


def cluster_details(
    rules: CommunityRules, scope: str, key: str, persons: list[str], kinds: list[str]
) -> dict[str, str]:
    """The alert's details: every case masked, with what made it a case."""
    return {
        "scope": scope,
        # a household id is a pseudonymous token: masked like a subject; a building is a number
        "scope_key": A.mask(key) if scope == HOUSEHOLD else key,
        "cases": str(len(persons)),
        "min_cases": str(rules.cluster_min_cases),
        "window_h": f"{rules.cluster_window_s / 3600:g}",
        "case_list": "、".join(A.mask(p) for p in persons),
        "case_kinds": ",".join(kinds),
        "revision": str(len(persons)),
    }


# -- occupancy -----------------------------------------------------------------------------------
def occupancy_delta(subject_type: str, direction: str, action: str, repeat: bool) -> int:
    """+1 / −1 / 0: what a decided pass does to the persons inside. Vehicles are not persons; a
    refused pass did not pass (RECHECK, WARN and ALLOW did); a re-scan within the dedupe window
    (``PendingPass.repeat``) is the same pass."""
    if subject_type == "VEHICLE" or action == DENY or repeat:
        return 0
    return 1 if direction == "IN" else -1


def over_capacity(inside: int, rules: CommunityRules) -> bool:
    return rules.capacity_persons > 0 and inside > rules.capacity_persons


def occupancy_details(inside: int, rules: CommunityRules, cleared: bool) -> dict[str, str]:
    details = {
        "inside": str(inside),
        "capacity": str(rules.capacity_persons),
        "status": "CLEARED" if cleared else "OVER",
        "advice": "ENTRY_RESUMED" if cleared else "LIMIT_ENTRY",
    }
    if cleared:
        details["notify"] = "false"  # closes the open alert; never pages anyone by itself
    return details


# -- gate anomaly --------------------------------------------------------------------------------
#: reasons of a refusal that says something about the gate or the crowd at it (not a policy
#: refusal of a known person such as a quota or a quarantine)
REFUSAL_REASONS = frozenset(
    {
        A.HEALTH_CODE_RED,
        A.UNKNOWN_SUBJECT,
        A.PASS_INVALID,
        A.VEHICLE_UNREGISTERED,
        A.FACE_CONSENT_MISSING,
    }
)


def is_refusal(action: str, reasons: Iterable[str]) -> bool:
    return action == DENY and any(r in REFUSAL_REASONS for r in reasons)


def minutes(seconds: int) -> int:
    """A window in whole minutes (at least one)."""
    return max(1, -(-seconds // 60))


def gate_anomaly_enabled(rules: CommunityRules) -> bool:
    return rules.gate_anomaly_min_refusals > 0 and rules.gate_anomaly_window_s > 0


def anomaly_threshold(baseline: int, rules: CommunityRules) -> int:
    """Refusals in the window that make it an anomaly, given the baseline's refusals."""
    scale = minutes(rules.gate_anomaly_window_s) / minutes(rules.gate_anomaly_baseline_s)
    by_rate = math.ceil(rules.gate_anomaly_factor * baseline * scale - 1e-9)
    return max(rules.gate_anomaly_min_refusals, by_rate)


def gate_details(
    refusals: int, baseline: int, threshold: int, rules: CommunityRules
) -> dict[str, str]:
    window = minutes(rules.gate_anomaly_window_s)
    base_minutes = minutes(rules.gate_anomaly_baseline_s)
    return {
        "refusals": str(refusals),
        "window_min": str(window),
        "baseline": f"{baseline * window / base_minutes:.1f}",
        "baseline_refusals": str(baseline),
        "baseline_h": f"{base_minutes / 60:g}",
        "threshold": str(threshold),
    }
