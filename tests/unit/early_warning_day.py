"""A generated community day for the early-warning alerts (issue 20), from one seed: residents
in buildings reporting symptoms and fevers and confirmed with a fever at the gate (a suspected
cluster that grows), persons passing IN and OUT in turn past a small capacity (over, then
cleared), and a burst of refusals at one gate over a trickle (a gate anomaly). Every scan's
decision depends on nothing but itself (residents without quotas, unknown subjects), so only the
windows are under test. Used by ``test_engine_order_property``."""

from __future__ import annotations

import random
from typing import Any

from streams.engine import READING, REPORT, SCAN, Item
from tests.unit.community_day import LATENESS_MS, MIN, T0, Community, Day, S

H = 60 * MIN


def early_warning_day(seed: int, communities: int = 2, span_ms: int = 3 * H) -> Day:
    rng = random.Random(seed)
    items: list[Item] = []
    comms: list[Community] = []
    for ci in range(communities):
        cid = f"9135011{ci}M000100Y43"
        c = Community(
            cid,
            rules={"capacity_persons": rng.randint(3, 5), "cluster_min_cases": 3},
        )
        comms.append(c)
        rids = [f"ew{ci}res{i:02d}{seed % 97:02d}aaaaaaaaaaaaa" for i in range(12)]
        for i, rid in enumerate(rids):
            c.residents.append(
                {
                    "resident_id": rid,
                    "community_id": cid,
                    "household_id": f"ew{ci}hh{i // 2}",
                    "status": "NORMAL",
                    "observation_start": None,
                    "key_groups": [],
                    "face_consent": False,
                    "updated_at": 0,
                    "building_id": str(1 + i // 6),
                }
            )

        def scan(eid: str, t: int, subject: str, direction: str, st: str, gate: str) -> None:
            items.append(_scan(rng, cid, eid, t, subject, direction, st, gate))  # noqa: B023

        # persons alternating IN and OUT: the count rises past the capacity and falls back
        for i, rid in enumerate(rids[:8]):
            t = T0 + rng.randrange(span_ms // 3)
            direction = "IN"
            for k in range(rng.randint(2, 5)):
                scan(f"p{i}-{k}", t, rid, direction, "RESIDENT", f"G-0{1 + k % 2}")
                direction = "OUT" if direction == "IN" else "IN"
                t += rng.randrange(5 * MIN, 40 * MIN)
        # refusals: a trickle at G-01, a burst of 10-16 within 6 minutes at G-02
        for k in range(rng.randint(3, 12)):
            scan(f"u{k}", T0 + rng.randrange(span_ms), f"stranger{k}", "IN", "UNKNOWN", "G-01")
        burst = T0 + H + rng.randrange(H)
        for k in range(rng.randint(10, 16)):
            t = burst + rng.randrange(6 * MIN)
            scan(f"b{k}", t, f"crowd{k}", "IN", "UNKNOWN", "G-02")
        # cases: reports of building 1 (a cluster that grows), some elsewhere, one gate fever
        sick = rng.sample(rids[:6], rng.randint(3, 6)) + rng.sample(rids[6:], 2)
        for k, rid in enumerate(sick):
            t = T0 + rng.randrange(span_ms)
            fever = rng.random() < 0.3
            ev = {
                "event_id": f"{cid}-rep{k}",
                "community_id": cid,
                "resident_id": rid,
                "report_date": 19676,
                "temperature_c": round(37.5 + rng.random(), 1) if fever else 36.6,
                "symptoms": [] if fever else [rng.choice(["DRY_COUGH", "FATIGUE", "SORE_THROAT"])],
                "event_time": t,
            }
            items.append((REPORT, ev, t + rng.randrange(2 * S)))
        rid = rids[rng.randrange(6)]
        t = T0 + rng.randrange(span_ms)
        for n, (dt, sensor, device) in enumerate(
            [
                (0, "INFRARED_GATE", "D-G-01"),
                (MIN + rng.randrange(2 * MIN), "INFRARED_HANDHELD", "H-01"),
            ]
        ):
            ev = {
                "event_id": f"{cid}-fever{n}",
                "community_id": cid,
                "gate_id": "G-01",
                "device_id": device,
                "subject_id": rid,
                "temperature_c": 38.4,
                "ambient_c": None,
                "sensor": sensor,
                "event_time": t + dt,
            }
            items.append((READING, ev, t + dt + rng.randrange(2 * S)))
        # the day's end: seals every window
        scan("end", T0 + span_ms + 2 * LATENESS_MS, rids[11], "IN", "RESIDENT", "G-01")
    items.sort(key=lambda i: (i[1]["event_time"], i[1]["event_id"]))
    return Day(comms, items)


def _scan(
    rng: random.Random,
    cid: str,
    eid: str,
    t: int,
    subject: str,
    direction: str,
    subject_type: str,
    gate: str,
) -> Item:
    ev = {
        "event_id": f"{cid}-{eid}",
        "community_id": cid,
        "gate_id": gate,
        "device_id": "D-" + gate,
        "direction": direction,
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": None,
        "method": "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": None,
        "event_time": t,
    }
    return (SCAN, ev, t + rng.randrange(2 * S))


def versions(alerts: list[dict[str, Any]], types: tuple[str, ...]) -> dict[str, list[Any]]:
    """Every version of each early-warning alert, by id, in the order emitted."""
    found: dict[str, list[Any]] = {}
    for a in alerts:
        if a["alert_type"] in types:
            found.setdefault(a["alert_id"], []).append(
                (a["alert_type"], a["event_time"], sorted(a["details"].items()))
            )
    return found
