"""Scripted community days for engine-level tests: reference data and a stream of scans, gate
readings, handheld rechecks and health reports, with Kafka timestamps, from one seed.

The day is built so that *what the events alone decide* is well defined whatever their arrival
order within the allowed lateness: a decision depends only on events more than the lateness
before it (a subject scans at most once per ``2 × lateness``; a household's exits are that far
apart; fever rechecks are handheld readings, which get no decision). A gate scan with a
temperature also publishes the gate's reading of the same instant, like the project's simulator
(issue 9, defect 5). One scanner's clock (a gate without a thermometer) runs eight hours fast
(its Kafka timestamps are right), and a few events are delivered twice.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.engine import READING, REPORT, SCAN, Item, RuleEngine, event_order
from streams.rules.timeutil import clock_for

T0 = 1_700_000_000_000  # 2023-11-15 06:13:20 Asia/Shanghai
S = 1000
MIN = 60 * S
H = 60 * MIN
LATENESS_MS = 300 * S


_NS = uuid.UUID("0b6a3f0e-3c1f-4f43-9d8b-51d1c7f0a001")


def _uuid(name: str) -> str:
    return str(uuid.uuid5(_NS, name))


@dataclass
class Community:
    community_id: str
    residents: list[dict[str, Any]] = field(default_factory=list)
    passes: list[dict[str, Any]] = field(default_factory=list)
    vehicles: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, Any] = field(default_factory=dict)


@dataclass
class Day:
    communities: list[Community]
    items: list[Item]  # in event-time order (``reference_order``)

    def engine(self, **kwargs: Any) -> RuleEngine:
        e = RuleEngine(allowed_lateness_s=LATENESS_MS // S, **kwargs)
        for c in self.communities:
            for r in c.residents:
                e.upsert_resident(r)
            for p in c.passes:
                e.upsert_pass(p)
            for v in c.vehicles:
                e.upsert_vehicle(v)
            e.upsert_rules({"community_id": c.community_id, **c.rules})
        return e


def community_day(
    seed: int,
    *,
    communities: int = 1,
    scans: int = 120,
    span_ms: int = 3 * H,
    fast_clock: bool = True,
    duplicates: bool = True,
) -> Day:
    rng = random.Random(seed)
    day = clock_for("Asia/Shanghai").local_day(T0)
    out: list[Item] = []
    comms: list[Community] = []
    for ci in range(communities):
        cid = f"9135010{ci}M000100Y43"
        c = Community(
            cid,
            rules={
                "entry_limit_scope": "HOUSEHOLD",
                "entry_limit_count": 1,
                "entry_limit_direction": "OUT",
                "curfew_start_minute": 23 * 60,
                "curfew_end_minute": 5 * 60,
            },
        )
        comms.append(c)
        subjects = []
        for i in range(10):
            rid = f"res{ci}{i:02d}abcdef0123456789"
            status = "HOME_OBSERVATION" if i == 0 else "NORMAL"
            c.residents.append(
                {
                    "resident_id": rid,
                    "community_id": cid,
                    "household_id": f"hh{ci}{i // 3}",
                    "status": status,
                    "observation_start": day - 13 if status == "HOME_OBSERVATION" else None,
                    "key_groups": [],
                    "face_consent": i % 2 == 0,
                    "updated_at": 0,
                }
            )
            subjects.append(("RESIDENT", rid, f"hh{ci}{i // 3}"))
        pass_id = f"pass{ci}0000000000000001"
        c.passes.append(
            {
                "pass_id": pass_id,
                "community_id": cid,
                "host_resident_id": c.residents[1]["resident_id"],
                "valid_from": T0 - H,
                "valid_until": T0 + 24 * H,
                "max_entries": 100,
                "revoked": False,
            }
        )
        subjects.append(("VISITOR", pass_id, None))
        subjects.append(("VISITOR", f"pass{ci}unknown00000000", None))
        subjects.append(("UNKNOWN", f"stranger{ci}000000000000", None))
        gates = [("G-01", f"D{ci}-01"), ("G-02", f"D{ci}-02"), ("G-03", f"D{ci}-03")]
        scanned: dict[str, list[int]] = {}
        exited: dict[str, list[int]] = {}
        seq = 0
        for _ in range(scans):
            t = T0 + rng.randrange(span_ms)
            subject_type, subject_id, household = subjects[rng.randrange(len(subjects))]
            if any(abs(t - x) < 2 * LATENESS_MS for x in scanned.setdefault(subject_id, [])):
                continue
            scanned[subject_id].append(t)
            gate_id, device_id = gates[rng.randrange(len(gates))]
            direction = "OUT" if rng.random() < 0.5 else "IN"
            if direction == "OUT" and household is not None:
                exits = exited.setdefault(household, [])
                if any(abs(t - x) < 2 * LATENESS_MS for x in exits):
                    direction = "IN"
                else:
                    exits.append(t)
            roll = rng.random()
            code = "RED" if roll < 0.05 else "YELLOW" if roll < 0.1 else "GREEN"
            temp: float | None = None
            if gate_id != "G-03":  # G-03 has no thermometer
                r = rng.random()
                if r < 0.15:
                    temp = round(37.3 + rng.random() * 1.4, 1)
                elif r < 0.18:
                    temp = round(33.0 + rng.random() * 0.9, 1)
                else:
                    temp = round(rng.gauss(36.3, 0.3), 1)
            seq += 1
            eid = _uuid(f"{cid}-s{seq}")
            # G-03's scanner (no thermometer) runs eight hours fast in the first community
            fast = fast_clock and device_id.endswith("-03") and ci == 0
            stamped = t + 8 * H if fast else t
            scan = {
                "event_id": eid,
                "community_id": cid,
                "gate_id": gate_id,
                "device_id": device_id,
                "direction": direction,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "household_id": household,
                "method": "FACE" if subject_type == "RESIDENT" and rng.random() < 0.1 else "QR",
                "health_code": code,
                "face_consent": False,
                "temperature_c": temp,
                "event_time": stamped,
            }
            out.append((SCAN, scan, t + rng.randrange(2 * S)))
            if temp is None:
                continue
            out.append(
                (
                    READING,
                    {
                        "event_id": _uuid(eid + "-t"),
                        "community_id": cid,
                        "gate_id": gate_id,
                        "device_id": device_id,
                        "subject_id": subject_id if rng.random() < 0.7 else None,
                        "temperature_c": temp,
                        "ambient_c": None,
                        "sensor": "INFRARED_GATE",
                        "event_time": stamped,
                    },
                    t + rng.randrange(2 * S),
                )
            )
            if temp >= 37.3 and rng.random() < 0.85:
                rt = t + MIN + rng.randrange(2 * MIN)
                value = (
                    round(37.3 + rng.random() * 1.2, 1)
                    if rng.random() < 0.4
                    else round(36.3 + rng.random() * 0.8, 1)
                )
                out.append(
                    (
                        READING,
                        {
                            "event_id": _uuid(eid + "-h"),
                            "community_id": cid,
                            "gate_id": gate_id,
                            "device_id": f"H{ci}-01",
                            "subject_id": subject_id,
                            "temperature_c": value,
                            "ambient_c": None,
                            "sensor": "INFRARED_HANDHELD",
                            "event_time": rt,
                        },
                        rt + rng.randrange(2 * S),
                    )
                )
        observed = c.residents[0]["resident_id"]
        for n, symptoms in enumerate([[], ["FATIGUE"], []]):
            rt = T0 + rng.randrange(span_ms)
            out.append(
                (
                    REPORT,
                    {
                        "event_id": _uuid(f"{cid}-r{n}"),
                        "community_id": cid,
                        "resident_id": observed if n != 1 else c.residents[2]["resident_id"],
                        "report_date": day,
                        "temperature_c": round(36.0 + rng.random(), 1),
                        "symptoms": symptoms,
                        "event_time": rt,
                    },
                    rt + S,
                )
            )
    if duplicates and out:
        for i in rng.sample(range(len(out)), k=min(3, len(out))):
            out.append(out[i])
    out.sort(key=reference_order)
    return Day(comms, out)


def reference_order(item: Item) -> tuple[int, int, str]:
    """Event-time order with the fast clock's events at the time the engine clamps them to."""
    return event_order(item, 120 * S)


def arrival_order(items: Iterable[Item], rng: random.Random, max_delay_ms: int) -> list[Item]:
    """The events as they might arrive: each one delayed by up to ``max_delay_ms`` after its
    Kafka timestamp (so two events swap only if their times are closer than that)."""
    items = list(items)
    keyed = [
        (ts if ts is not None else ev["event_time"]) + rng.randrange(max_delay_ms + 1)
        for _, ev, ts in items
    ]
    order = sorted(range(len(keyed)), key=lambda i: (keyed[i], i))
    return [items[i] for i in order]
