"""The fallback policy: what the edge answers a waiting device when the core's decision does not
come in time (decide stage down, Kafka unreachable, a slow broker). Pure: a scan, the edge's
replica of the reference topics, the community's policy → a decision and its reasons.

Deliberately smaller than the decide stage: only what a gate must not get wrong alone —
a red health code, a resident under quarantine/home observation going out (or hospitalised,
either way), a temperature at or above the community's fever threshold, a subject the replica
does not know (resident, vehicle, visitor pass) coming in — going out it is let out with a
warning, as the core does (nobody is kept inside). Everything else is allowed, and the answer is
marked ``edge-fallback``; the event still reaches the core, and if the core's decision later
differs, the edge raises ``EDGE_FALLBACK_DISAGREED`` for staff to review.

Each of the four answers is ``DENY`` or ``RECHECK``, set per community (``FANGXIAN_EDGE_FALLBACK``,
a JSON file ``{"<community_id>|*": {"red_code": "DENY", "quarantine": "DENY", "fever": "RECHECK",
"unknown_subject": "DENY"}}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from schemas.topics import vehicle_key
from streams.rules.temperature import at_or_above

RANK = {"ALLOW": 0, "WARN": 1, "RECHECK": 2, "DENY": 3}
QUARANTINE = frozenset({"HOME_OBSERVATION", "CENTRALIZED_ISOLATION"})
DEFAULT_FEVER_C = 37.3


@dataclass(frozen=True)
class FallbackPolicy:
    red_code: str = "DENY"
    quarantine: str = "DENY"
    fever: str = "RECHECK"
    unknown_subject: str = "DENY"

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) not in ("DENY", "RECHECK"):
                raise ValueError(f"fallback {f.name} must be DENY or RECHECK / 只能是拒绝或复测")


class FallbackPolicies:
    """Policies by community (``*`` = every other community)."""

    def __init__(self, by_community: Mapping[str, FallbackPolicy] | None = None) -> None:
        self._by = dict(by_community or {})

    def of(self, community_id: str) -> FallbackPolicy:
        return self._by.get(community_id) or self._by.get("*") or FallbackPolicy()

    @classmethod
    def from_file(cls, path: str | Path) -> FallbackPolicies:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls({cid: FallbackPolicy(**values) for cid, values in data.items()})


@dataclass(frozen=True)
class Replica:
    """The reference records the fallback reads (mappings id → record dict; vehicles by
    ``vehicle_key(community, plate token)``, their key on the topic)."""

    residents: Mapping[str, Mapping[str, Any]]
    vehicles: Mapping[str, Mapping[str, Any]]
    passes: Mapping[str, Mapping[str, Any]]
    rules: Mapping[str, Mapping[str, Any]]


def _get(mapping: Mapping[str, Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
    try:
        return mapping.get(key)
    except Exception:  # a replica record that does not decode counts as unknown
        return None


def fallback_decision(
    scan: Mapping[str, Any], replica: Replica, policy: FallbackPolicy
) -> tuple[str, tuple[str, ...]]:
    """(decision, reasons) for ``scan`` from the replica alone. Reasons are contract alert
    types, as the core's decisions name them."""
    community = scan["community_id"]
    decision, reasons = "ALLOW", []

    def fire(action: str, reason: str) -> None:
        nonlocal decision
        reasons.append(reason)
        if RANK[action] > RANK[decision]:
            decision = action

    if scan.get("health_code") == "RED":
        fire(policy.red_code, "HEALTH_CODE_RED")
    rules = _get(replica.rules, community) or {}
    threshold = float(rules.get("fever_threshold_c") or DEFAULT_FEVER_C)
    temperature = scan.get("temperature_c")
    if temperature is not None and at_or_above(temperature, threshold):  # at 0.1 °C, as the core
        fire(policy.fever, "FEVER_RECHECK")
    subject_type, subject_id = scan["subject_type"], scan["subject_id"]
    # nobody is kept inside (docs/rules.md, behaviour 2): who is at the gate refuses an entry;
    # on the way out the person is let out with a warning, as the core decides
    unknown = "WARN" if scan.get("direction") == "OUT" else policy.unknown_subject
    if subject_type in ("RESIDENT", "STAFF"):
        resident = _get(replica.residents, subject_id)
        status = resident.get("status") if resident is not None else None
        # under observation stays in, wherever the person is registered (as the core)
        if status == "HOSPITALIZED" or (status in QUARANTINE and scan["direction"] == "OUT"):
            fire(policy.quarantine, "QUARANTINE_BREACH")
        if resident is None or (
            subject_type == "RESIDENT" and resident.get("community_id") != community
        ):
            fire(unknown, "UNKNOWN_SUBJECT")
    elif subject_type == "VEHICLE":
        # registrations are per community (issue 20): the plate's one in this community
        vehicle = _get(replica.vehicles, vehicle_key(community, subject_id))
        if vehicle is None or vehicle.get("community_id") != community:
            fire(unknown, "VEHICLE_UNREGISTERED")
    elif subject_type == "VISITOR":
        visitor = _get(replica.passes, subject_id)
        if visitor is None or visitor.get("revoked") or visitor.get("community_id") != community:
            fire(unknown, "PASS_INVALID")
    else:
        fire(unknown, "UNKNOWN_SUBJECT")
    return decision, tuple(reasons)
