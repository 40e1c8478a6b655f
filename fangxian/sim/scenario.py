"""Scripted situations: one cause per ``AlertType`` (except OTHER) planted into a run's traffic,
each recorded as a ``Scenario`` with the event ids that should raise it (``_ScenarioPlanner``).
``traffic.CommunitySimulator.events(ensure_every_alert_type=True)`` uses it; ``scripted_day()``
(in ``traffic.py``) is the run whose time span satisfies every scenario."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fangxian.sim.model import (
    DEFAULT_RULES,
    Event,
    Scenario,
    _Community,
    _Gate,
    _Resident,
)

if TYPE_CHECKING:
    from fangxian.sim.traffic import CommunitySimulator


class _ScenarioPlanner:
    """Plans one situation per alert type inside a run window (used by ``events``).

    Situations go into ``pending`` (merged with the background by event time); home-observation
    reports they replace go into ``skip_reports`` so the background does not file them too.
    """

    def __init__(
        self, sim: CommunitySimulator, rng: random.Random, end_ms: int, silent_from: int | None
    ) -> None:
        self.sim, self.rng, self.end_ms, self.silent_from = sim, rng, end_ms, silent_from
        self.pending: list[tuple[int, int, str, Event]] = []
        self.skip_reports: set[tuple[str, int]] = set()
        self.history: list[Event] = []  # reports from before the run, in time order
        self.face_quiet: tuple[str, int, int] | None = None
        self.scenarios: list[Scenario] = []
        # the window for scripted scans: after the first minute, and early enough that a
        # missed recheck's window (300 s) closes before the run ends
        self.lo, self.hi = sim.start_ms + 60_000, end_ms - 420_000
        self.c0 = sim.communities[0]
        self.restricted = next((c for c in sim.communities if c.restricted), None)
        self.observer = sim.communities[1 % len(sim.communities)]

    # --- what the window must contain --------------------------------------------------------

    def _curfew_time(self) -> int | None:
        c = self.restricted
        if c is None or c.rules["curfew_start_minute"] is None:
            return None
        start, end = c.rules["curfew_start_minute"], c.rules["curfew_end_minute"]
        for t in range(self.lo, self.hi, 60_000):
            minute = (t + self.sim._offset_ms(t)) // 60_000 % 1440
            if (start <= minute < end) if start < end else (minute >= start or minute < end):
                return t + 20_000
        return None

    def _deadline(self) -> int | None:
        sim, minute = self.sim, self.observer.rules["report_deadline_minute"]
        lo, hi = sim.start_ms, self.end_ms - 60_000
        for day in range(sim.local_day(lo), sim.local_day(hi) + 1):
            at = sim._local_ms(day, minute)
            if lo <= at <= hi:
                return at
        return None

    # --- event builders ----------------------------------------------------------------------

    def _push(self, name: str, event: Event) -> str:
        self.pending.append((event["event_time"], len(self.pending), name, event))
        return str(event["event_id"])

    def _add(self, alert_type: str, c: _Community, at: int, ids: Sequence[str], **kw: Any) -> None:
        self.scenarios.append(Scenario(alert_type, c.community_id, at, tuple(ids), **kw))

    def _entry(
        self, c: _Community, gate: _Gate, at: int, r: _Resident, temp: float, code: str = "GREEN"
    ) -> list[str]:
        """A resident walks in: the gate device measures, then the scan carries the reading."""
        reading = self.sim._reading(self.rng, c, gate, at, temp, subject_id=r.resident_id)
        return [
            self._push("TemperatureReading", reading),
            self._resident_scan(c, gate, at, r, "IN", temp, code),
        ]

    def _resident_scan(
        self,
        c: _Community,
        gate: _Gate,
        at: int,
        r: _Resident,
        direction: str,
        temp: float | None = None,
        code: str = "GREEN",
        method: str = "QR",
        household_id: str | None = None,
    ) -> str:
        scan = self.sim._scan(
            self.rng,
            c,
            gate,
            at,
            direction=direction,
            subject_type="RESIDENT",
            subject_id=r.resident_id,
            household_id=household_id or r.household_id,
            method=method,
            health_code=code,
            face_consent=r.face_consent,
            temperature_c=temp,
        )
        return self._push("GateScan", scan)

    def _other_scan(
        self, at: int, subject_type: str, subject_id: str, method: str, code: str, direction: str
    ) -> str:
        c0 = self.c0
        scan = self.sim._scan(
            self.rng,
            c0,
            c0.gates[0],
            at,
            direction=direction,
            subject_type=subject_type,
            subject_id=subject_id,
            method=method,
            health_code=code,
        )
        return self._push("GateScan", scan)

    def _report(
        self, c: _Community, r: _Resident, at: int, temp: float, symptoms: list[str]
    ) -> str:
        day = self.sim.local_day(at)
        self.skip_reports.add((r.resident_id, day))
        report = self.sim._health_report(
            self.rng, c, r, at, day, temperature_c=temp, symptoms=symptoms
        )
        return self._push("HealthReport", report)

    # --- the plan ----------------------------------------------------------------------------

    def plan(self) -> list[Scenario]:
        curfew_at, deadline = self._curfew_time(), self._deadline()
        problems = []
        if self.hi - self.lo < 1_200_000:
            problems.append("a run of at least 28 minutes")
        if curfew_at is None:
            problems.append("curfew minutes of a restricted community")
        if deadline is None:
            problems.append("a report deadline (10:00 local) at least a minute before the end")
        if self.silent_from is None:
            problems.append("room for a device to stay silent past device_silent_s")
        if problems:
            raise ValueError(
                "ensure_every_alert_type needs " + ", ".join(problems) + "; scripted_day() "
                "runs 05:40–10:20 local / 运行时间窗不足以触发全部告警类型"
            )
        assert curfew_at is not None and deadline is not None and self.silent_from is not None
        step = (self.hi - self.lo) // 14
        slots = iter(range(self.lo, self.hi, step))
        self._fevers(slots)
        self._devices(self.silent_from)
        self._gate_refusals(slots)
        self._restrictions(curfew_at, next(slots))
        self._reports(deadline, next(slots))
        self._early_warnings()
        self.scenarios.sort(key=lambda s: (s.at_ms, s.alert_type))
        return self.scenarios

    def _fevers(self, slots: Iterator[int]) -> None:
        c0, rng = self.c0, self.rng
        gate = c0.gates[1]  # neither the drifting nor the silent device
        for alert, first, recheck in (
            ("FEVER_CONFIRMED", 37.8, 38.0),
            ("FEVER_CLEARED", 37.5, 36.6),
            ("FEVER_RECHECK_MISSED", 37.6, None),
        ):
            at, r = next(slots), rng.choice(c0.active)
            ids = self._entry(c0, gate, at, r, first)
            kw = {"subject_id": r.resident_id, "device_id": gate.device_id}
            if alert == "FEVER_CONFIRMED":
                self._add("FEVER_RECHECK", c0, at, ids, note=f"gate reads {first} °C", **kw)
            note = f"gate {first} °C, no recheck within recheck_window_s"
            if recheck is not None:
                handheld = self.sim._reading(
                    rng, c0, gate, at + 120_000, recheck, subject_id=r.resident_id, handheld=True
                )
                ids.append(self._push("TemperatureReading", handheld))
                note = f"gate {first} °C, handheld recheck 2 min later {recheck} °C"
            self._add(alert, c0, at, ids, note=note, **kw)
        at, r = next(slots), rng.choice(c0.active)
        ids = self._entry(c0, gate, at, r, 33.4)
        self._add(
            "TEMPERATURE_IMPLAUSIBLE",
            c0,
            at,
            ids[:1],
            subject_id=r.resident_id,
            device_id=gate.device_id,
            note="33.4 °C: forehead cooled by the wind",
        )

    def _devices(self, silent_from: int) -> None:
        """One device goes quiet (after one last reading); one reads 1.5 °C below its neighbour
        every 30 s for longer than the drift window."""
        sim, rng, c0 = self.sim, self.rng, self.c0
        silent_gate = c0.gates[-1]
        last = sim._reading(rng, c0, silent_gate, silent_from - 1_000, 36.4)
        self._add(
            "DEVICE_SILENT",
            c0,
            silent_from + 600_000,
            [self._push("TemperatureReading", last)],
            device_id=silent_gate.device_id,
            note="last event just before silent_from",
        )
        c = sim.communities[-1]
        drifting = c.gates[0]
        peers = [g for g in c.gates[1:] if g is not silent_gate]
        end = min(self.hi, self.lo + (DEFAULT_RULES["drift_window_s"] + 120) * 1000)
        ids = []
        for t in range(self.lo, end, 30_000):
            low = sim._reading(rng, c, drifting, t, round(rng.gauss(34.85, 0.15), 1))
            ids.append(self._push("TemperatureReading", low))
            for peer in peers:
                normal = sim._reading(rng, c, peer, t, round(rng.gauss(36.35, 0.15), 1))
                self._push("TemperatureReading", normal)
        self._add(
            "DEVICE_DRIFT",
            c,
            end,
            ids,
            device_id=drifting.device_id,
            note="1.5 °C below the community's other gate devices for the drift window",
        )

    def _gate_refusals(self, slots: Iterator[int]) -> None:
        sim, rng, c0 = self.sim, self.rng, self.c0
        gate = c0.gates[0]
        for alert, code in (("HEALTH_CODE_RED", "RED"), ("HEALTH_CODE_YELLOW", "YELLOW")):
            at, r = next(slots), rng.choice(c0.active)
            ids = self._entry(c0, gate, at, r, 36.5, code)
            self._add(alert, c0, at, ids[1:], subject_id=r.resident_id, note=f"{code} health code")
        at = next(slots)
        r = next(x for x in c0.confined if x.status == "CENTRALIZED_ISOLATION")
        ids = [self._resident_scan(c0, gate, at, r, "OUT", code="RED")]
        self._add(
            "QUARANTINE_BREACH",
            c0,
            at,
            ids,
            subject_id=r.resident_id,
            note="resident in centralized isolation scans OUT",
        )
        at = next(slots)
        outsider = sim._pseudonymiser.token("outsider", f"scripted-{sim.seed}")
        ids = [self._other_scan(at, "RESIDENT", outsider, "QR", "GREEN", "IN")]
        self._add(
            "UNKNOWN_SUBJECT",
            c0,
            at,
            ids,
            subject_id=outsider,
            note="resident code not in this community's register",
        )
        at = next(slots)
        revoked = next(p for p in c0.passes if p.revoked)
        ids = [self._other_scan(at, "VISITOR", revoked.pass_id, "QR", "GREEN", "IN")]
        self._add("PASS_INVALID", c0, at, ids, subject_id=revoked.pass_id, note="revoked pass")
        at = next(slots)
        stranger = sim._pseudonymiser.token("plate", f"{c0.province}Z9Z9Z9")
        ids = [self._other_scan(at, "VEHICLE", stranger, "PLATE", "UNKNOWN", "IN")]
        self._add(
            "VEHICLE_UNREGISTERED", c0, at, ids, subject_id=stranger, note="plate not registered"
        )
        at = next(slots)
        r = next(x for x in c0.active if not x.face_consent)
        ids = [self._resident_scan(c0, gate, at, r, "OUT", method="FACE")]
        window = DEFAULT_RULES["alert_suppression_s"] * 1000
        self.face_quiet = (c0.community_id, at - window, at + window)
        self._add(
            "FACE_CONSENT_MISSING",
            c0,
            at,
            ids,
            subject_id=r.resident_id,
            note="face scan, no face consent in the register",
        )

    def _restrictions(self, curfew_at: int, slot: int) -> None:
        c = self.restricted
        assert c is not None
        gate, rng = c.gates[0], self.rng
        r = rng.choice(c.active)
        ids = [self._resident_scan(c, gate, curfew_at, r, "OUT")]
        self._add(
            "CURFEW_VIOLATION",
            c,
            curfew_at,
            ids,
            subject_id=r.resident_id,
            note="OUT during the curfew",
        )
        members: dict[str, list[_Resident]] = {}
        for x in c.active:
            members.setdefault(x.household_id, []).append(x)
        leaver, follower = next(m for m in members.values() if len(m) >= 2)[:2]
        at = min(max(slot, curfew_at + 60_000), self.hi - 600_000)
        self._resident_scan(c, gate, at, leaver, "OUT")
        ids = [self._resident_scan(c, gate, at + 600_000, follower, "OUT")]
        self._add(
            "ENTRY_LIMIT_EXCEEDED",
            c,
            at + 600_000,
            ids,
            subject_id=follower.resident_id,
            note="second member of the household out 10 min after the first",
        )
        # a code naming a household the register does not give the resident (a stale or
        # forged code): coming in, so it counts toward no exit quota
        forger = next(x for x in c.active if x.household_id != leaver.household_id)
        forged = self.sim._pseudonymiser.token("household", c.community_id + "forged")
        ids = [self._resident_scan(c, gate, at + 300_000, forger, "IN", household_id=forged)]
        self._add(
            "HOUSEHOLD_MISMATCH",
            c,
            at + 300_000,
            ids,
            subject_id=forger.resident_id,
            note="the code's household is not the register's; the register's is counted",
        )

    def _early_warnings(self) -> None:
        """Issue 20: three residents of one building report symptoms within 10 minutes (a
        suspected cluster); a gate refuses twelve unknown people within five minutes (a gate
        anomaly). OCCUPANCY_OVER_CAPACITY needs the background's count: ``capacity.py``."""
        c0, rng = self.c0, self.rng
        buildings: dict[str, list[_Resident]] = {}
        for r in c0.active:
            buildings.setdefault(r.building_id or "", []).append(r)
        neighbours = max(buildings.values(), key=len)[:3]
        at = self.hi - 45 * 60_000
        ids = [
            self._report(c0, r, at + k * 300_000, 36.8, [rng.choice(["DRY_COUGH", "FATIGUE"])])
            for k, r in enumerate(neighbours)
        ]
        self._add(
            "CLUSTER_SUSPECTED",
            c0,
            at + 600_000,
            ids,
            note="three residents of one building report symptoms within 10 minutes",
        )
        c = self.sim.communities[-1]
        gate = c.gates[-1]  # not the drifting device
        at = self.lo + 20 * 60_000
        ids = []
        for k in range(12):
            stranger = self.sim._pseudonymiser.token("outsider", f"crowd-{self.sim.seed}-{k}")
            scan = self.sim._scan(
                rng, c, gate, at + k * 25_000, direction="IN", subject_type="UNKNOWN",
                subject_id=stranger, method="MANUAL", health_code="UNKNOWN",
            )  # fmt: skip
            ids.append(self._push("GateScan", scan))
        self._add(
            "GATE_ANOMALY",
            c,
            at + 11 * 25_000,
            ids,
            note="twelve unknown people refused at one gate within five minutes",
        )

    def _reports(self, deadline: int, slot: int) -> None:
        sim, observer = self.sim, self.observer
        days = DEFAULT_RULES["observation_days"]
        today = sim.local_day(sim.start_ms)
        completing_c, completing = next(
            (c, r)
            for c in sim.communities
            for r in c.residents
            if r.status == "HOME_OBSERVATION" and r.observation_start == today - days
        )
        # the earlier days of its period, as a consumer finds them in the retained topic
        for day in range(today - days, today):
            at = sim._local_ms(day, 480 + self.rng.uniform(0, 90))
            self.history.append(
                sim._health_report(
                    self.rng, completing_c, completing, at, day, temperature_c=36.5, symptoms=[]
                )
            )
        ids = [self._report(completing_c, completing, slot, 36.4, [])]
        self._add(
            "OBSERVATION_COMPLETED",
            completing_c,
            slot,
            ids,
            subject_id=completing.resident_id,
            note=f"the day after the period; its {days} daily reports come first as history",
        )
        deadline_day = sim.local_day(deadline)
        observing = [
            r
            for r in observer.residents
            if r.status == "HOME_OBSERVATION"
            and r.observation_start is not None
            and r.observation_start <= deadline_day < r.observation_start + days
            and r is not completing
        ]
        overdue, symptomatic, feverish = observing[:3]
        self.skip_reports.add((overdue.resident_id, deadline_day))
        self._add(
            "REPORT_OVERDUE",
            observer,
            deadline,
            [],
            subject_id=overdue.resident_id,
            note="home observation, no report by the deadline (no source event)",
        )
        at = max(self.lo, min(deadline, self.hi) - 900_000)
        ids = [self._report(observer, symptomatic, at, 36.8, ["DRY_COUGH", "FATIGUE"])]
        self._add("SYMPTOMS_REPORTED", observer, at, ids, subject_id=symptomatic.resident_id)
        ids = [self._report(observer, feverish, at + 120_000, 37.9, [])]
        self._add("FEVER_REPORTED", observer, at + 120_000, ids, subject_id=feverish.resident_id)
