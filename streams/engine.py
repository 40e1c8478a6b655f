"""The rule engine: the pure rules of ``streams.rules`` plus the window state they need.

No I/O and no clocks: time is the events' ``event_time`` or the ``now_ms`` the caller passes.
The Faust agents feed it batches (``on_scans``, ``on_readings``, ``on_reports``), call ``tick``
periodically, and send the returned decisions and alerts on.

Event time: each community has a watermark (the highest event time seen from it). An event more
than ``allowed_lateness_s`` behind it is *late*: counted (``stats['late_events']``), listed in
``Output.late_event_ids`` and still given its outputs (every scan gets its decision, reports are
recorded) — but it no longer changes windowed state (recheck sequences, entry counts, dedupe,
drift), whose windows may be gone. Events within lateness go into their correct windows.

Replays: a scan whose ``event_id`` was seen gets the same decision again and changes nothing; a
replayed reading or report produces nothing. Alerts are not re-emitted for replays (their ids are
deterministic, so a downstream de-duplicates a replay from scratch too).

Reference data: ``residents``/``passes``/``vehicles``/``rules`` may be injected as Mappings (e.g.
backed by the worker's tables). Every change must still be announced through ``upsert_*`` /
``delete_*``: they write through to mutable mappings and maintain the engine's own indexes (the
residents under home observation, the parsed rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from streams.rules import alerts as A
from streams.rules.alerts import AlertSuppressor, build_alert, mask
from streams.rules.config import DEFAULT_RULES, CommunityRules
from streams.rules.device_health import CommunityDevices, DeviceState
from streams.rules.entry_limit import (
    ExitQuota,
    PassDeduper,
    check_entry_limit,
    direction_limited,
    limit_key,
)
from streams.rules.gate_access import (
    ACTION_RANK,
    ALLOW,
    DENY,
    RECHECK,
    WARN,
    Finding,
    check_curfew,
    check_face_consent,
    check_health_code,
    check_quarantine,
    check_resident,
    check_staff,
    check_unknown_type,
    check_vehicle,
    check_visitor_pass,
)
from streams.rules.health_reports import (
    ObservationLog,
    is_overdue,
    reported_fever,
    symptoms_severity,
)
from streams.rules.idempotency import RecentIds
from streams.rules.temperature import (
    HIGH,
    IMPLAUSIBLE,
    NORMAL,
    FeverOutcome,
    FeverRecheck,
    Reading,
    classify,
    recheck_key,
)
from streams.rules.timeutil import MS_PER_SECOND, clock_for, format_day, format_minute

Event = Mapping[str, Any]
Record = Mapping[str, Any]

_FEVER_SEVERITY = {
    A.FEVER_RECHECK: A.WARNING,
    A.FEVER_CONFIRMED: A.CRITICAL,
    A.FEVER_CLEARED: A.INFO,
}
_RANK_ALLOW = ACTION_RANK[ALLOW]


class Output:
    """What a batch (or a tick) produced."""

    __slots__ = ("alerts", "decisions", "late", "late_event_ids")

    def __init__(self) -> None:
        self.decisions: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.late = 0
        self.late_event_ids: list[str] = []

    def __repr__(self) -> str:
        return (
            f"Output(decisions={len(self.decisions)}, alerts={len(self.alerts)}, late={self.late})"
        )


def _fmt_c(value: float) -> str:
    return f"{value:.1f}"


class RuleEngine:
    """Holds the rules' window state for any number of communities."""

    def __init__(
        self,
        *,
        allowed_lateness_s: int = 300,
        residents: Mapping[str, Record] | None = None,
        passes: Mapping[str, Record] | None = None,
        vehicles: Mapping[str, Record] | None = None,
        rules: Mapping[str, Record] | None = None,
        replay_capacity: int = 200_000,
        sweep_interval_s: int = 60,
        device_forget_s: int = 7 * 86_400,
    ) -> None:
        self.lateness_ms = allowed_lateness_s * MS_PER_SECOND
        self._residents: Mapping[str, Record] = {} if residents is None else residents
        self._passes: Mapping[str, Record] = {} if passes is None else passes
        self._vehicles: Mapping[str, Record] = {} if vehicles is None else vehicles
        self._rule_records: Mapping[str, Record] = {} if rules is None else rules
        # An injected rules mapping may change behind our back: re-parse once per batch.
        self._rules_external = rules is not None
        self._rules: dict[str, CommunityRules] = {}
        self._sweep_interval_ms = sweep_interval_s * MS_PER_SECOND
        self._device_forget_ms = device_forget_s * MS_PER_SECOND
        self._last_sweep: int | None = None

        self._watermarks: dict[str, int] = {}
        self._decisions: RecentIds[dict[str, Any]] = RecentIds(replay_capacity)
        self._seen: RecentIds[bool] = RecentIds(replay_capacity)
        self._fever: dict[str, FeverRecheck] = {}
        self._devices: dict[str, CommunityDevices] = {}
        self._quota = ExitQuota()
        self._dedupe = PassDeduper()
        self._pass_entries: dict[str, int] = {}
        self._suppressor = AlertSuppressor()
        # residents under HOME_OBSERVATION: resident_id -> (community_id, observation_start)
        self._observed: dict[str, tuple[str, int | None]] = {}
        self._logs: dict[str, ObservationLog] = {}
        self.stats: dict[str, int] = {
            "scans": 0,
            "readings": 0,
            "reports": 0,
            "late_events": 0,
            "replayed_events": 0,
            "decisions": 0,
            "alerts": 0,
            "suppressed_alerts": 0,
            "expired_state": 0,
        }
        for rid, rec in self._residents.items():
            self._index_resident(rid, rec)

    # ------------------------------------------------------------------ reference data

    def upsert_resident(self, record: Record) -> None:
        rid = record["resident_id"]
        if isinstance(self._residents, MutableMapping):
            self._residents[rid] = record
        self._index_resident(rid, record)

    def delete_resident(self, resident_id: str) -> None:
        if isinstance(self._residents, MutableMapping):
            self._residents.pop(resident_id, None)
        self._observed.pop(resident_id, None)
        self._logs.pop(resident_id, None)

    def upsert_pass(self, record: Record) -> None:
        if isinstance(self._passes, MutableMapping):
            self._passes[record["pass_id"]] = record

    def delete_pass(self, pass_id: str) -> None:
        if isinstance(self._passes, MutableMapping):
            self._passes.pop(pass_id, None)
        self._pass_entries.pop(pass_id, None)

    def upsert_vehicle(self, record: Record) -> None:
        if isinstance(self._vehicles, MutableMapping):
            self._vehicles[record["vehicle_id"]] = record

    def delete_vehicle(self, vehicle_id: str) -> None:
        if isinstance(self._vehicles, MutableMapping):
            self._vehicles.pop(vehicle_id, None)

    def upsert_rules(self, record: Record) -> None:
        """A changed rules record applies from the next event on."""
        cid = record["community_id"]
        if isinstance(self._rule_records, MutableMapping):
            self._rule_records[cid] = record
        self._rules[cid] = CommunityRules.from_record(record)

    def delete_rules(self, community_id: str) -> None:
        if isinstance(self._rule_records, MutableMapping):
            self._rule_records.pop(community_id, None)
        self._rules.pop(community_id, None)

    def rules_for(self, community_id: str) -> CommunityRules:
        rules = self._rules.get(community_id)
        if rules is None:
            record = self._rule_records.get(community_id)
            rules = DEFAULT_RULES if record is None else CommunityRules.from_record(record)
            self._rules[community_id] = rules
        return rules

    def _index_resident(self, rid: str, record: Record) -> None:
        if record.get("status") != "HOME_OBSERVATION":
            self._observed.pop(rid, None)
            self._logs.pop(rid, None)
            return
        start = record.get("observation_start")
        previous = self._observed.get(rid)
        if previous is not None and previous[1] != start:
            self._logs.pop(rid, None)  # a new observation period starts a new log
        self._observed[rid] = (record["community_id"], start)

    def bind_reference(
        self,
        *,
        residents: Mapping[str, Record] | None = None,
        passes: Mapping[str, Record] | None = None,
        vehicles: Mapping[str, Record] | None = None,
        rules: Mapping[str, Record] | None = None,
    ) -> None:
        """Use these mappings for reference lookups from now on (e.g. the worker's store)."""
        if residents is not None:
            self._residents = residents
            self._observed.clear()
            for rid, rec in residents.items():
                self._index_resident(rid, rec)
        if passes is not None:
            self._passes = passes
        if vehicles is not None:
            self._vehicles = vehicles
        if rules is not None:
            self._rule_records = rules
            self._rules_external = True
            self._rules.clear()

    def on_reference_update(self, kind: str, key: str, record: Record | None) -> None:
        """A reference record changed (``record`` None: tombstone). ``kind`` is one of
        ``residents``, ``passes``, ``vehicles``, ``rules``."""
        if kind == "residents":
            if record is None:
                self.delete_resident(key)
            else:
                self.upsert_resident(record)
        elif kind == "passes":
            if record is None:
                self.delete_pass(key)
            else:
                self.upsert_pass(record)
        elif kind == "vehicles":
            if record is None:
                self.delete_vehicle(key)
            else:
                self.upsert_vehicle(record)
        elif kind == "rules":
            if record is None:
                self.delete_rules(key)
            else:
                self.upsert_rules(record)
        else:
            raise ValueError(f"unknown reference kind {kind!r}")

    # ------------------------------------------------------------------ batches

    def _begin_batch(self) -> None:
        if self._rules_external:
            self._rules.clear()

    def _advance(self, cid: str, t: int) -> bool:
        """Move the community's watermark; True if ``t`` is beyond the allowed lateness."""
        wm = self._watermarks.get(cid)
        if wm is None or t > wm:
            self._watermarks[cid] = t
            return False
        return t < wm - self.lateness_ms

    def _mark_late(self, out: Output, event_id: str) -> None:
        out.late += 1
        out.late_event_ids.append(event_id)
        self.stats["late_events"] += 1

    def on_scans(self, events: Iterable[Event], now_ms: int | None = None) -> Output:
        """One GateDecision per scan (and the alerts the scans raise)."""
        out = Output()
        self._begin_batch()
        touched: set[str] = set()
        scan = self._scan
        n = 0
        for ev in events:
            scan(ev, now_ms, out, touched)
            n += 1
        self.stats["scans"] += n
        self._close_rechecks(touched, now_ms, out)
        self.stats["decisions"] += len(out.decisions)
        return out

    def on_readings(self, events: Iterable[Event], now_ms: int | None = None) -> Output:
        out = Output()
        self._begin_batch()
        touched: set[str] = set()
        reading = self._reading
        n = 0
        for ev in events:
            reading(ev, now_ms, out, touched)
            n += 1
        self.stats["readings"] += n
        self._close_rechecks(touched, now_ms, out)
        return out

    def on_reports(self, events: Iterable[Event], now_ms: int | None = None) -> Output:
        out = Output()
        self._begin_batch()
        n = 0
        for ev in events:
            self._report(ev, now_ms, out)
            n += 1
        self.stats["reports"] += n
        return out

    # ------------------------------------------------------------------ alerts

    def _alert(
        self,
        out: Output,
        rules: CommunityRules,
        alert_type: str,
        severity: str,
        community_id: str,
        suppress_key: str,
        cause: str,
        sources: list[str],
        event_time: int,
        created_at: int,
        gate_id: str | None = None,
        device_id: str | None = None,
        subject_id: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        if not self._suppressor.admit(
            alert_type,
            community_id,
            suppress_key,
            event_time,
            rules.alert_suppression_s * MS_PER_SECOND,
        ):
            self.stats["suppressed_alerts"] += 1
            return
        self.stats["alerts"] += 1
        out.alerts.append(
            build_alert(
                alert_type=alert_type,
                severity=severity,
                community_id=community_id,
                cause=cause,
                source_event_ids=sources,
                event_time=event_time,
                created_at=created_at,
                gate_id=gate_id,
                device_id=device_id,
                subject_id=subject_id,
                details=details,
            )
        )

    def _fever_alert(
        self,
        out: Output,
        rules: CommunityRules,
        cid: str,
        outcome: FeverOutcome,
        created_at: int,
    ) -> None:
        first, second = outcome.first, outcome.second
        last = second if second is not None else first
        sources = [first.event_id] if second is None else [first.event_id, second.event_id]
        details = {
            "temperature_c": _fmt_c(last.temperature_c),
            "first_temperature_c": _fmt_c(first.temperature_c),
            "threshold_c": _fmt_c(rules.fever_threshold_c),
            "recheck_min": f"{rules.recheck_window_s / 60:g}",
        }
        if outcome.alert_type == A.FEVER_CLEARED:
            details["notify"] = "false"  # recorded, no staff alert
        self._alert(
            out,
            rules,
            outcome.alert_type,
            _FEVER_SEVERITY[outcome.alert_type],
            cid,
            recheck_key(last.subject_id, last.device_id),
            "|".join(sources),
            sources,
            last.event_time,
            created_at,
            gate_id=last.gate_id,
            device_id=last.device_id,
            subject_id=last.subject_id,
            details=details,
        )

    def _close_rechecks(self, touched: Iterable[str], now_ms: int | None, out: Output) -> None:
        """Rechecks whose window the community's event time has passed are missed."""
        for cid in touched:
            fever = self._fever.get(cid)
            if fever is not None:
                wm = self._watermarks[cid]
                self._emit_missed(cid, fever.close_due(wm), wm if now_ms is None else now_ms, out)

    def _emit_missed(self, cid: str, missed: list[Reading], created_at: int, out: Output) -> None:
        if not missed:
            return
        rules = self.rules_for(cid)
        for r in missed:
            self._alert(
                out,
                rules,
                A.FEVER_RECHECK_MISSED,
                A.WARNING,
                cid,
                recheck_key(r.subject_id, r.device_id),
                r.event_id,
                [r.event_id],
                r.deadline,
                created_at,
                gate_id=r.gate_id,
                device_id=r.device_id,
                subject_id=r.subject_id,
                details={
                    "temperature_c": _fmt_c(r.temperature_c),
                    "recheck_min": f"{rules.recheck_window_s / 60:g}",
                    "deadline": str(r.deadline),
                },
            )

    # ------------------------------------------------------------------ temperature

    def _device(self, cid: str, device_id: str, gate_id: str, t: int) -> DeviceState:
        devices = self._devices.get(cid)
        if devices is None:
            devices = self._devices[cid] = CommunityDevices()
        dev = devices.devices.get(device_id)
        if dev is None:
            return devices.seen(cid, device_id, gate_id, t)
        if t > dev.last_seen:
            dev.last_seen = t
            dev.silent = False
        return dev

    def _temperature(
        self,
        out: Output,
        rules: CommunityRules,
        cid: str,
        event_id: str,
        t: int,
        temperature_c: float,
        gate_id: str,
        device_id: str,
        subject_id: str | None,
        dev: DeviceState,
        late: bool,
        created_at: int,
    ) -> tuple[int, FeverOutcome | None]:
        """Feed one temperature into device health and the fever flow; returns its class and
        what it decided. Raises TEMPERATURE_IMPLAUSIBLE and the fever alerts."""
        if temperature_c < rules.plausible_min_c or temperature_c > rules.plausible_max_c:
            kind = IMPLAUSIBLE
        elif temperature_c >= rules.fever_threshold_c:
            kind = HIGH
        else:
            kind = NORMAL
        if not late:
            devices = self._devices[cid]
            devices.add_sample(
                dev,
                t,
                temperature_c,
                kind != IMPLAUSIBLE,
                self._watermarks[cid] - rules.drift_window_s * MS_PER_SECOND,
            )
            drift = devices.drift(dev, rules.drift_margin_c) if devices.drift_due(dev, t) else None
            if drift is not None:
                self._alert(
                    out,
                    rules,
                    A.DEVICE_DRIFT,
                    A.WARNING,
                    cid,
                    "device:" + device_id,
                    device_id + "|" + event_id,
                    [event_id],
                    t,
                    created_at,
                    gate_id=gate_id,
                    device_id=device_id,
                    details={
                        "device_mean_c": _fmt_c(drift.device_mean_c),
                        "others_mean_c": _fmt_c(drift.others_mean_c),
                        "delta_c": _fmt_c(drift.device_mean_c - drift.others_mean_c),
                        "device_readings": str(drift.device_readings),
                        "other_readings": str(drift.other_readings),
                        "other_devices": str(drift.other_devices),
                        "window_min": f"{rules.drift_window_s / 60:g}",
                    },
                )
        if kind == IMPLAUSIBLE:
            self._alert(
                out,
                rules,
                A.TEMPERATURE_IMPLAUSIBLE,
                A.WARNING if subject_id else A.INFO,
                cid,
                recheck_key(subject_id, device_id),
                event_id,
                [event_id],
                t,
                created_at,
                gate_id=gate_id,
                device_id=device_id,
                subject_id=subject_id,
                details={
                    "temperature_c": _fmt_c(temperature_c),
                    "plausible_min_c": _fmt_c(rules.plausible_min_c),
                    "plausible_max_c": _fmt_c(rules.plausible_max_c),
                },
            )
            return kind, None
        if late:
            return kind, None
        fever = self._fever.get(cid)
        if fever is None:
            fever = self._fever[cid] = FeverRecheck()
        outcome = fever.observe(
            subject_id or "device:" + device_id,
            Reading(event_id, t, temperature_c, kind == HIGH, gate_id, device_id, subject_id),
            rules.recheck_window_s * MS_PER_SECOND,
        )
        if outcome is not None:
            self._fever_alert(out, rules, cid, outcome, created_at)
        return kind, outcome

    def _reading(self, ev: Event, now_ms: int | None, out: Output, touched: set[str]) -> None:
        event_id = ev["event_id"]
        if event_id in self._seen:
            self.stats["replayed_events"] += 1
            return
        self._seen.put(event_id, True)
        cid = ev["community_id"]
        t = ev["event_time"]
        rules = self._rules.get(cid) or self.rules_for(cid)
        wm = self._watermarks.get(cid)
        late = False
        if wm is None or t > wm:
            self._watermarks[cid] = t
        elif t < wm - self.lateness_ms:
            late = True
            self._mark_late(out, event_id)
        touched.add(cid)
        gate_id = ev["gate_id"]
        device_id = ev["device_id"]
        dev = self._device(cid, device_id, gate_id, t)
        if ev["sensor"] == "INFRARED_GATE":
            dev.watched = True
        self._temperature(
            out,
            rules,
            cid,
            event_id,
            t,
            ev["temperature_c"],
            gate_id,
            device_id,
            ev.get("subject_id"),
            dev,
            late,
            t if now_ms is None else now_ms,
        )

    # ------------------------------------------------------------------ gate scans

    def _scan(self, ev: Event, now_ms: int | None, out: Output, touched: set[str]) -> None:
        event_id = ev["event_id"]
        previous = self._decisions.get(event_id)
        if previous is not None:
            self.stats["replayed_events"] += 1
            replay = dict(previous)
            replay["reasons"] = list(previous["reasons"])
            out.decisions.append(replay)
            return
        cid = ev["community_id"]
        t = ev["event_time"]
        rules = self._rules.get(cid) or self.rules_for(cid)
        wm = self._watermarks.get(cid)
        late = False
        if wm is None or t > wm:
            self._watermarks[cid] = t
        elif t < wm - self.lateness_ms:
            late = True
            self._mark_late(out, event_id)
        touched.add(cid)
        created_at = t if now_ms is None else now_ms
        gate_id = ev["gate_id"]
        device_id = ev["device_id"]
        subject_type = ev["subject_type"]
        subject_id = ev["subject_id"]
        direction = ev["direction"]
        devices = self._devices.get(cid)
        dev = devices.devices.get(device_id) if devices is not None else None
        if dev is None:
            dev = self._device(cid, device_id, gate_id, t)
            dev.watched = True  # a gate's scanner
        elif t > dev.last_seen:
            dev.last_seen = t
            dev.silent = False
        temperature_c = ev.get("temperature_c")

        resident: Record | None = None
        if subject_type == "RESIDENT" or subject_type == "STAFF":
            resident = self._residents.get(subject_id)

        if ev.get("method") == "FACE":
            refused = check_face_consent(ev, resident)
            if refused is not None:
                self._face_refused(
                    ev, out, rules, cid, t, created_at, refused, dev, temperature_c, late
                )
                return

        reasons: list[str] = []
        rank = _RANK_ALLOW
        action = ALLOW
        findings: list[Finding] = []

        health_code = ev.get("health_code")
        if health_code == "RED" or health_code == "YELLOW":
            found = check_health_code(health_code, rules)
            if found is not None:
                findings.append(found)

        repeat = False
        limit: tuple[str, str, str] | None = None
        if subject_type == "RESIDENT":
            found = check_resident(cid, resident)
            if found is not None:
                findings.append(found)
            elif direction == "OUT":
                found = check_quarantine(direction, resident)
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
                    limit = (cid, scope_id[0], scope_id[1])
        elif subject_type == "VISITOR":
            used = self._pass_entries.get(subject_id, 0)
            if direction == "IN" and used and not late:
                repeat = self._dedupe.is_repeat(
                    (cid, subject_id, gate_id, direction), t, rules.dedupe_window_s * MS_PER_SECOND
                )
            found = check_visitor_pass(
                cid, direction, t, self._passes.get(subject_id), used - 1 if repeat else used
            )
            if found is not None:
                findings.append(found)
        elif subject_type == "VEHICLE":
            found = check_vehicle(cid, direction, t, self._vehicles.get(subject_id))
            if found is not None:
                findings.append(found)
        elif subject_type == "STAFF":
            found = check_staff(resident)
            if found is not None:
                findings.append(found)
        else:
            findings.append(check_unknown_type())

        if rules.curfew_start_minute is not None and rules.curfew_end_minute is not None:
            found = check_curfew(clock_for(rules.timezone).minute_of_day(t), rules)
            if found is not None:
                findings.append(found)

        if limit is not None and not late:
            window_ms = rules.entry_limit_window_s * MS_PER_SECOND
            repeat = self._dedupe.is_repeat(
                (cid, subject_id, gate_id, direction), t, rules.dedupe_window_s * MS_PER_SECOND
            )
            if not repeat:
                found = check_entry_limit(self._quota.count(limit, t, window_ms), rules, limit[1])
                if found is not None:
                    found.details["limit_key"] = mask(limit[2])
                    findings.append(found)

        for found in findings:  # rare: most passes fire no rule
            reasons.append(found.alert_type)
            r = ACTION_RANK[found.action]
            if r > rank:
                rank, action = r, found.action
            self._alert(
                out,
                rules,
                found.alert_type,
                found.severity,
                cid,
                subject_id or gate_id,
                event_id,
                [event_id],
                t,
                created_at,
                gate_id=gate_id,
                device_id=device_id,
                subject_id=subject_id,
                details=found.details,
            )

        if temperature_c is not None:
            kind, outcome = self._temperature(
                out,
                rules,
                cid,
                event_id,
                t,
                temperature_c,
                gate_id,
                device_id,
                subject_id,
                dev,
                late,
                created_at,
            )
            if kind == IMPLAUSIBLE:
                reasons.append(A.TEMPERATURE_IMPLAUSIBLE)
                if rank < ACTION_RANK[WARN]:
                    rank, action = ACTION_RANK[WARN], WARN
            elif kind == HIGH:
                reasons.append(A.FEVER_RECHECK if outcome is None else outcome.alert_type)
                if rank < ACTION_RANK[RECHECK]:
                    rank, action = ACTION_RANK[RECHECK], RECHECK
            elif outcome is not None:
                reasons.append(outcome.alert_type)

        if action != DENY and not late and not repeat:
            # a pass let through uses the quota; a denied one does not
            if limit is not None:
                self._quota.record(limit, t)
                self._dedupe.record((cid, subject_id, gate_id, direction), t)
            elif subject_type == "VISITOR" and direction == "IN":
                self._pass_entries[subject_id] = self._pass_entries.get(subject_id, 0) + 1
                self._dedupe.record((cid, subject_id, gate_id, direction), t)

        decision = {
            "event_id": event_id,
            "community_id": cid,
            "gate_id": gate_id,
            "subject_id": subject_id,
            "decision": action,
            "reasons": reasons,
            "decided_at": created_at,
        }
        self._decisions.put(event_id, decision)
        out.decisions.append(decision)

    def _face_refused(
        self,
        ev: Event,
        out: Output,
        rules: CommunityRules,
        cid: str,
        t: int,
        created_at: int,
        refused: Finding,
        dev: DeviceState,
        temperature_c: float | None,
        late: bool,
    ) -> None:
        """A face match without consent: a rejection record without the face-derived identity.
        Its temperature only feeds device health."""
        event_id = ev["event_id"]
        gate_id = ev["gate_id"]
        device_id = ev["device_id"]
        if temperature_c is not None and not late:
            kind = classify(temperature_c, rules)
            devices = self._devices[cid]
            devices.add_sample(
                dev,
                t,
                temperature_c,
                kind != IMPLAUSIBLE,
                self._watermarks[cid] - rules.drift_window_s * MS_PER_SECOND,
            )
        self._alert(
            out,
            rules,
            refused.alert_type,
            refused.severity,
            cid,
            "device:" + device_id,
            event_id,
            [event_id],
            t,
            created_at,
            gate_id=gate_id,
            device_id=device_id,
            subject_id=None,
            details=refused.details,
        )
        decision = {
            "event_id": event_id,
            "community_id": cid,
            "gate_id": gate_id,
            "subject_id": A.REDACTED,
            "decision": refused.action,
            "reasons": [refused.alert_type],
            "decided_at": created_at,
        }
        self._decisions.put(event_id, decision)
        out.decisions.append(decision)

    # ------------------------------------------------------------------ health reports

    def _report(self, ev: Event, now_ms: int | None, out: Output) -> None:
        event_id = ev["event_id"]
        if event_id in self._seen:
            self.stats["replayed_events"] += 1
            return
        self._seen.put(event_id, True)
        cid = ev["community_id"]
        t = ev["event_time"]
        rules = self._rules.get(cid) or self.rules_for(cid)
        if self._advance(cid, t):
            self._mark_late(out, event_id)
        created_at = t if now_ms is None else now_ms
        rid = ev["resident_id"]
        symptoms = ev.get("symptoms") or ()
        severity = symptoms_severity(symptoms)
        if severity is not None:
            self._alert(
                out,
                rules,
                A.SYMPTOMS_REPORTED,
                severity,
                cid,
                rid,
                event_id,
                [event_id],
                t,
                created_at,
                subject_id=rid,
                details={
                    "symptoms": ",".join(symptoms),
                    "symptoms_zh": "、".join(A.label_zh(s) for s in symptoms),
                },
            )
        temperature_c = ev.get("temperature_c")
        fever = reported_fever(temperature_c, rules)
        if fever and temperature_c is not None:
            self._alert(
                out,
                rules,
                A.FEVER_REPORTED,
                A.WARNING,
                cid,
                rid,
                event_id,
                [event_id],
                t,
                created_at,
                subject_id=rid,
                details={
                    "temperature_c": _fmt_c(temperature_c),
                    "threshold_c": _fmt_c(rules.fever_threshold_c),
                },
            )
        observed = self._observed.get(rid)
        if observed is None:
            return
        start = observed[1]
        day = ev.get("report_date")
        if day is None:
            day = clock_for(rules.timezone).local_day(t)
        log = self._logs.get(rid)
        if log is None:
            log = self._logs[rid] = ObservationLog()
        log.record(day, severity is None and not fever, start, rules.observation_days)
        self._maybe_completed(out, rules, cid, rid, log, start, t, created_at)

    def _maybe_completed(
        self,
        out: Output,
        rules: CommunityRules,
        cid: str,
        rid: str,
        log: ObservationLog,
        start: int | None,
        event_time: int,
        created_at: int,
    ) -> None:
        if log.completed or not log.is_complete(start, rules.observation_days):
            return
        log.completed = True
        self._alert(
            out,
            rules,
            A.OBSERVATION_COMPLETED,
            A.INFO,
            cid,
            rid,
            f"{rid}|{start}",
            [],
            event_time,
            created_at,
            subject_id=rid,
            details={
                "observation_days": str(rules.observation_days),
                "observation_start": str(start),
            },
        )

    # ------------------------------------------------------------------ timers

    def tick(self, now_ms: int) -> Output:
        """Timer rules at wall-clock ``now_ms``: missed rechecks, silent devices, overdue reports;
        and, every ``sweep_interval_s``, expiry of state older than its window (+ lateness)."""
        out = Output()
        self._begin_batch()
        for cid, fever in self._fever.items():
            self._emit_missed(cid, fever.close_due(now_ms), now_ms, out)
        self._tick_devices(now_ms, out)
        self._tick_reports(now_ms, out)
        if self._last_sweep is None or now_ms - self._last_sweep >= self._sweep_interval_ms:
            self._last_sweep = now_ms
            self.sweep(now_ms)
        return out

    def _tick_devices(self, now_ms: int, out: Output) -> None:
        for cid, devices in self._devices.items():
            rules = self.rules_for(cid)
            silent_ms = rules.device_silent_s * MS_PER_SECOND
            for dev in devices.newly_silent(now_ms, silent_ms):
                self._alert(
                    out,
                    rules,
                    A.DEVICE_SILENT,
                    A.WARNING,
                    cid,
                    "device:" + dev.device_id,
                    f"{dev.device_id}|{dev.last_seen}",
                    [],
                    dev.last_seen + silent_ms,
                    now_ms,
                    gate_id=dev.gate_id,
                    device_id=dev.device_id,
                    details={
                        "last_seen": str(dev.last_seen),
                        "silent_min": f"{rules.device_silent_s / 60:g}",
                    },
                )

    def _tick_reports(self, now_ms: int, out: Output) -> None:
        local: dict[str, tuple[int, int]] = {}
        for rid, (cid, start) in self._observed.items():
            rules = self.rules_for(cid)
            today_minute = local.get(cid)
            if today_minute is None:
                clock = clock_for(rules.timezone)
                today_minute = local[cid] = (clock.local_day(now_ms), clock.minute_of_day(now_ms))
            today, minute = today_minute
            log = self._logs.get(rid)
            if log is None:
                log = self._logs[rid] = ObservationLog()
            if not log.completed:
                self._maybe_completed(out, rules, cid, rid, log, start, now_ms, now_ms)
            if (
                today in log.reported
                or today in log.overdue_alerted
                or not is_overdue(
                    today, minute, rules.report_deadline_minute, start, rules.observation_days
                )
            ):
                continue
            log.overdue_alerted.add(today)
            deadline = clock_for(rules.timezone).to_epoch_ms(today, rules.report_deadline_minute)
            self._alert(
                out,
                rules,
                A.REPORT_OVERDUE,
                A.WARNING,
                cid,
                rid,
                f"{rid}|{today}",
                [],
                deadline,
                now_ms,
                subject_id=rid,
                details={
                    "date": format_day(today),
                    "deadline": format_minute(rules.report_deadline_minute),
                },
            )

    def sweep(self, now_ms: int) -> int:
        """Expire state older than its window (+ lateness), per community event time."""
        lateness = self.lateness_ms
        wm = self._watermarks
        dropped = 0
        for cid, fever in self._fever.items():
            rules = self.rules_for(cid)
            dropped += fever.expire(wm[cid] - rules.recheck_window_s * MS_PER_SECOND - lateness)
        horizons_dedupe: dict[str, int] = {}
        horizons_suppress: dict[str, int] = {}
        horizons_quota: dict[str, int] = {}
        keep_quota: dict[str, int] = {}
        for cid, w in wm.items():
            rules = self.rules_for(cid)
            horizons_dedupe[cid] = w - rules.dedupe_window_s * MS_PER_SECOND - lateness
            horizons_suppress[cid] = w - rules.alert_suppression_s * MS_PER_SECOND - lateness
            horizons_quota[cid] = w - lateness
            keep_quota[cid] = rules.entry_limit_window_s * MS_PER_SECOND
        dropped += self._dedupe.expire(horizons_dedupe)
        dropped += self._suppressor.expire(horizons_suppress)
        dropped += self._quota.expire(horizons_quota, keep_quota)
        for cid, devices in self._devices.items():
            devices.expire(wm[cid] - self.rules_for(cid).drift_window_s * MS_PER_SECOND)
            dropped += devices.forget(now_ms - self._device_forget_ms)
        for pass_id in list(self._pass_entries):
            record = self._passes.get(pass_id)
            until = record.get("valid_until") if record is not None else None
            if record is None or (
                until is not None and until < wm.get(record.get("community_id", ""), 0) - lateness
            ):
                del self._pass_entries[pass_id]
                dropped += 1
        self.stats["expired_state"] += dropped
        return dropped

    def state_sizes(self) -> dict[str, int]:
        """Entries held per kind of state (for metrics)."""
        return {
            "recheck_keys": sum(len(f) for f in self._fever.values()),
            "open_rechecks": sum(f.open_count() for f in self._fever.values()),
            "devices": sum(len(d.devices) for d in self._devices.values()),
            "quota_keys": len(self._quota),
            "dedupe_keys": len(self._dedupe),
            "suppression_keys": len(self._suppressor),
            "pass_entries": len(self._pass_entries),
            "observed_residents": len(self._observed),
            "replay_ids": len(self._decisions) + len(self._seen),
        }

    def watermark(self, community_id: str) -> int | None:
        return self._watermarks.get(community_id)
