"""Gate access and quotas: the state behind a scan's decision.

* ``ReplayMemory`` (store ``replay``, key event id): every event seen recently, with the decision
  a scan got — a redelivered scan gets the same decision again and changes nothing, a replayed
  reading or report produces nothing. Bounded by ``capacity`` (oldest first) and by event time.
* ``ExitQuota`` (store ``quota``, key ``community|scope|id``): pass times for entry limits
  (``streams.rules.entry_limit``), counted both ways in event time.
* ``PassDeduper`` (store ``dedupe``, key ``community|subject|gate|direction``): a repeat scan of
  one pass is counted once.
* visitor-pass entries (store ``pass_entries``, key ``community|pass``): IN passes made on a pass.

Every pass that was let through counts, however late it arrives: the quota is a count of real
passes, so a backlog, a restart's rebuild in mixed chunks or a gate uploading its buffer cannot
make an exit disappear (issue 9, defect 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.rules.config import CommunityRules
from streams.rules.entry_limit import (
    ExitQuota,
    PassDeduper,
    check_entry_limit,
    direction_limited,
    limit_key,
)
from streams.rules.gate_access import (
    Finding,
    check_curfew,
    check_health_code,
    check_quarantine,
    check_resident,
    check_staff,
    check_unknown_type,
    check_vehicle,
    check_visitor_pass,
)
from streams.rules.timeutil import MS_PER_SECOND, clock_for
from streams.state.store import KeyedStore

Record = Mapping[str, Any]
_SEP = "\x1e"


class Replayed:
    """A remembered event: its community, event time and (scans) the decision it got."""

    __slots__ = ("community_id", "decision", "event_time")

    def __init__(self, community_id: str, event_time: int, decision: dict[str, Any] | None):
        self.community_id = community_id
        self.event_time = event_time
        self.decision = decision


def _encode_replayed(v: Replayed) -> bytes:
    d = v.decision
    if d is None:
        return f"{v.community_id}{_SEP}{v.event_time}".encode()
    return _SEP.join(
        (
            v.community_id,
            str(v.event_time),
            d["gate_id"],
            d["subject_id"],
            d["decision"],
            ",".join(d["reasons"]),
            str(d["decided_at"]),
        )
    ).encode()


def _decode_replayed(raw: bytes) -> Replayed:
    parts = raw.decode().split(_SEP)
    if len(parts) == 2:
        return Replayed(parts[0], int(parts[1]), None)
    cid, t, gate, subject, action, reasons, decided_at = parts
    return Replayed(
        cid,
        int(t),
        {
            "event_id": "",  # filled in by ReplayMemory.decision
            "community_id": cid,
            "gate_id": gate,
            "subject_id": subject,
            "decision": action,
            "reasons": reasons.split(",") if reasons else [],
            "decided_at": int(decided_at),
        },
    )


class ReplayMemory:
    """Recently seen event ids (and scans' decisions), bounded by count and by event time."""

    __slots__ = ("_get", "capacity", "store")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.store: KeyedStore[Replayed] = KeyedStore(
            "replay", encode=_encode_replayed, decode=_decode_replayed
        )
        self._get = self.store.getter()

    def __contains__(self, event_id: str) -> bool:
        return self._get(event_id) is not None

    def decision(self, event_id: str) -> dict[str, Any] | None:
        """A copy of the decision a scan got, or None (not seen, or not a scan)."""
        seen = self._get(event_id)
        if seen is None or seen.decision is None:
            return None
        replay = dict(seen.decision)
        replay["event_id"] = event_id
        replay["reasons"] = list(seen.decision["reasons"])
        return replay

    def remember(
        self, event_id: str, community_id: str, t: int, decision: dict[str, Any] | None
    ) -> None:
        store = self.store
        store[event_id] = Replayed(community_id, t, decision)
        if len(store) > self.capacity:
            store.pop(next(iter(store)))

    def expire(self, horizon_ms: Mapping[str, int]) -> int:
        stale = [
            k for k, v in self.store.items() if v.event_time < horizon_ms.get(v.community_id, 0)
        ]
        for k in stale:
            self.store.pop(k)
        return len(stale)

    def __len__(self) -> int:
        return len(self.store)


class PendingPass:
    """What a scan's access checks found, and what to record once its action is known."""

    __slots__ = ("dedupe_key", "findings", "limit", "repeat", "visitor_entry")

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.limit: tuple[str, str, str] | None = None
        self.dedupe_key: tuple[str, str, str, str] | None = None
        self.repeat = False
        self.visitor_entry: str | None = None


class GateAccess:
    """Entry quotas, dedupe and visitor-pass counts of every community of a task."""

    __slots__ = ("dedupe", "pass_entries", "quota")

    def __init__(self) -> None:
        self.quota = ExitQuota()
        self.dedupe = PassDeduper()
        self.pass_entries: KeyedStore[int] = KeyedStore("pass_entries")

    def stores(self) -> list[KeyedStore[Any]]:
        return [self.quota.store, self.dedupe.store, self.pass_entries]

    def observe(
        self,
        ev: Mapping[str, Any],
        cid: str,
        t: int,
        rules: CommunityRules,
        resident: Record | None,
        visitor_pass: Record | None,
        vehicle: Record | None,
        observation_over: bool,
    ) -> PendingPass:
        """The access findings of one scan (health code, subject, quota, curfew)."""
        pending = PendingPass()
        findings = pending.findings
        subject_type = ev["subject_type"]
        subject_id = ev["subject_id"]
        direction = ev["direction"]
        gate_id = ev["gate_id"]
        health_code = ev.get("health_code")
        if health_code == "RED" or health_code == "YELLOW":
            found = check_health_code(health_code, rules)
            if found is not None:
                findings.append(found)
        if subject_type == "RESIDENT":
            found = check_resident(cid, resident)
            if found is None:
                found = check_quarantine(direction, resident, observation_over)
            if found is not None:
                findings.append(found)
            if rules.entry_limit_scope != "NONE" and direction_limited(
                direction, rules.entry_limit_direction
            ):
                household = ev.get("household_id") or (
                    resident.get("household_id") if resident is not None else None
                )
                scope_id = limit_key(rules, subject_id, household)
                if scope_id is not None:
                    pending.limit = (cid, scope_id[0], scope_id[1])
                    pending.dedupe_key = (cid, subject_id, gate_id, direction)
        elif subject_type == "VISITOR":
            key = cid + "|" + subject_id
            used = self.pass_entries.get(key, 0) or 0
            if direction == "IN":
                pending.dedupe_key = (cid, subject_id, gate_id, direction)
                pending.visitor_entry = key
                if used and self.dedupe.is_repeat(
                    pending.dedupe_key, t, rules.dedupe_window_s * MS_PER_SECOND
                ):
                    pending.repeat = True
            found = check_visitor_pass(
                cid, direction, t, visitor_pass, used - 1 if pending.repeat else used
            )
            if found is not None:
                findings.append(found)
        elif subject_type == "VEHICLE":
            found = check_vehicle(cid, direction, t, vehicle)
            if found is not None:
                findings.append(found)
        elif subject_type == "STAFF":
            found = check_staff(resident)
            if found is None:
                found = check_quarantine(direction, resident, observation_over)
            if found is not None:
                findings.append(found)
        else:
            findings.append(check_unknown_type())

        if rules.curfew_enabled:
            found = check_curfew(clock_for(rules.timezone).minute_of_day(t), rules)
            if found is not None:
                findings.append(found)

        limit = pending.limit
        if limit is not None:
            assert pending.dedupe_key is not None
            pending.repeat = self.dedupe.is_repeat(
                pending.dedupe_key, t, rules.dedupe_window_s * MS_PER_SECOND
            )
            if not pending.repeat:
                window_ms = rules.entry_limit_window_s * MS_PER_SECOND
                found = check_entry_limit(self.quota.count(limit, t, window_ms), rules, limit[1])
                if found is not None:
                    findings.append(found)
        return pending

    def record(self, pending: PendingPass, t: int) -> None:
        """A pass was let through: it uses the quota (a denied one does not)."""
        if pending.repeat:
            return
        if pending.limit is not None:
            self.quota.record(pending.limit, t)
        elif pending.visitor_entry is not None:
            key = pending.visitor_entry
            self.pass_entries[key] = (self.pass_entries.get(key, 0) or 0) + 1
        else:
            return
        assert pending.dedupe_key is not None
        self.dedupe.record(pending.dedupe_key, t)

    def expire(
        self,
        dedupe_horizon: Mapping[str, int],
        quota_horizon: Mapping[str, int],
        quota_keep: Mapping[str, int],
        passes: Mapping[str, Record],
        pass_horizon: Mapping[str, int],
    ) -> int:
        dropped = self.dedupe.expire(dedupe_horizon)
        dropped += self.quota.expire(quota_horizon, quota_keep)
        for key in list(self.pass_entries):
            cid, _, pass_id = key.partition("|")
            record = passes.get(pass_id)
            until = record.get("valid_until") if record is not None else None
            if record is None or (until is not None and until < pass_horizon.get(cid, 0)):
                del self.pass_entries[key]
                dropped += 1
        return dropped
