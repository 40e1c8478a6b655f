"""The scripted day's OCCUPANCY_OVER_CAPACITY (issue 20): a crowd of visitors comes in at the
moment the background traffic has the most persons inside one community, and leaves twelve
minutes later; that community's ``capacity_persons`` is set between the background's highest
count and the crowd's peak, so the decide stage raises the alert when the crowd is in and clears
it when it has gone — and the background alone never reaches it.

The count is estimated here as the decide stage counts it (IN − OUT of passes not refused, per
event-time minute, never below zero; docs/rules.md), refusals guessed from the register (red
codes, confined residents going out, faces without consent, dead passes, unknown subjects). A
wrong guess moves the count by one: the capacity is ``MARGIN`` above the background's highest
estimate, the crowd ``CROWD`` above the count when it comes."""

from __future__ import annotations

import heapq
import random
from typing import Any

from fangxian.sim.model import PERSONS, Event, Scenario, _Community, _Pass

CROWD = 60
#: capacity above the background's highest count (the crowd's peak is CROWD above it)
MARGIN = 10
MINUTE_MS = 60_000
STAY_MS = 12 * MINUTE_MS
#: the crowd has left, the minute ended and the allowed lateness (300 s) passed before the end
TAIL_MS = STAY_MS + 10 * MINUTE_MS


def _refused(c: _Community, scan: Event, entries: dict[str, int]) -> bool:
    kind, subject, direction = scan["subject_type"], scan["subject_id"], scan["direction"]
    if kind not in PERSONS:
        return True  # vehicles do not count; unknown subjects are refused
    if direction == "OUT" and kind == "VISITOR":
        return False  # a visitor's exit is not refused (issue 20, behaviour 2)
    if scan["health_code"] == "RED":
        return True
    if kind == "STAFF":
        return subject not in c.staff_ids
    if kind == "VISITOR":
        p = next((p for p in c.passes if p.pass_id == subject), None)
        if p is None or not p.valid_at(scan["event_time"]):
            return True
        if direction == "IN":
            if entries.get(subject, 0) >= p.max_entries:
                return True
            entries[subject] = entries.get(subject, 0) + 1
        return False
    r = next((r for r in c.residents if r.resident_id == subject), None)
    if r is None or r.status in ("CENTRALIZED_ISOLATION", "HOSPITALIZED"):
        return True
    if r.status == "HOME_OBSERVATION" and direction == "OUT":
        return True  # a quarantine breach
    return scan["method"] == "FACE" and not r.face_consent


def inside_by_minute(c: _Community, events: list[tuple[str, Event]]) -> list[tuple[int, int]]:
    """(minute end, persons inside then) for every minute with a pass of ``c``."""
    deltas: dict[int, int] = {}
    entries: dict[str, int] = {}
    for name, e in events:
        if name != "GateScan" or e["community_id"] != c.community_id or _refused(c, e, entries):
            continue
        minute = e["event_time"] - e["event_time"] % MINUTE_MS
        deltas[minute] = deltas.get(minute, 0) + (1 if e["direction"] == "IN" else -1)
    count, out = 0, []
    for minute in sorted(deltas):
        count = max(0, count + deltas[minute])
        out.append((minute + MINUTE_MS, count))
    return out


def script_capacity(
    sim: Any, events: list[tuple[str, Event]], end_ms: int
) -> tuple[list[tuple[str, Event]], Scenario]:
    """The events with the crowd's passes merged in (event-time order kept), and its scenario;
    sets the community's ``capacity_persons`` (``sim``: the ``CommunitySimulator``)."""
    c: _Community = next((x for x in sim.communities[1:] if not x.restricted), sim.communities[-1])
    trajectory = inside_by_minute(c, events)
    highest = max((n for _, n in trajectory), default=0)
    window = [
        (n, at) for at, n in trajectory if sim.start_ms + 2 * MINUTE_MS <= at <= end_ms - TAIL_MS
    ]
    at = max(window)[1] if window else sim.start_ms + 2 * MINUTE_MS
    c.rules["capacity_persons"] = highest + MARGIN
    rng = random.Random(f"fangxian-simulator:{sim.seed}:crowd")
    # visitors with passes of their own (a meeting at the community hall): unlike residents,
    # none of them has a pass of the background's that could cancel theirs (an OUT while the
    # crowd is in) or merge with it (a re-scan is one pass), so the crowd adds exactly CROWD
    hosts = [r for r in c.active if r.status in ("NORMAL", "RECOVERED")] or list(c.active)
    crowd = [
        _Pass(
            pass_id=sim._pseudonymiser.token("pass", f"{c.community_id}C{i:05d}"),
            host_resident_id=rng.choice(hosts).resident_id,
            valid_from=sim.start_ms - 60 * MINUTE_MS,
            valid_until=end_ms + 24 * 60 * MINUTE_MS,
            max_entries=2,
            revoked=False,
        )
        for i in range(CROWD)
    ]
    c.passes.extend(crowd)  # in the reference records the run loads
    gate = c.gates[1 % len(c.gates)]
    scans: list[tuple[str, Event]] = []
    for i, p in enumerate(crowd):
        for direction, t in (("IN", at + i * 3_000), ("OUT", at + STAY_MS + i * 3_000)):
            scan = sim._scan(
                rng, c, gate, t, direction=direction, subject_type="VISITOR",
                subject_id=p.pass_id,
            )  # fmt: skip
            scans.append(("GateScan", scan))
    scans.sort(key=lambda s: s[1]["event_time"])
    merged = list(heapq.merge(events, scans, key=lambda s: s[1]["event_time"]))
    scenario = Scenario(
        "OCCUPANCY_OVER_CAPACITY",
        c.community_id,
        at + (CROWD - 1) * 3_000,
        tuple(s[1]["event_id"] for s in scans if s[1]["direction"] == "IN"),
        note=(
            f"{CROWD} visitors come in when {highest} persons are inside (the day's most) and "
            f"leave {STAY_MS // MINUTE_MS} min later: capacity {highest + MARGIN}, cleared "
            "after they have gone"
        ),
    )
    return merged, scenario
