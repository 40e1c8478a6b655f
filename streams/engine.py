"""The rule engine: a small dispatcher over the state objects of ``streams.state``.

No I/O: time is the events' ``event_time``, their Kafka timestamps (for clock skew), and the
``now_ms`` the caller passes to ``tick``. The decide stage calls ``on_events`` once per
partition batch (scans, readings and reports of one poll merged in event-time order), calls
``tick`` periodically, and sends the returned decisions and alerts on.

State objects (each keeps its data in ``streams.state.store.KeyedStore`` instances, so the
changelog and ``restore`` come from the stores — docs/topology.md):

| object | stores (key) |
| --- | --- |
| ``EventClock`` | ``clock`` (community) |
| ``ReplayMemory`` | ``replay`` (chunk: the events of one batch) |
| ``GateAccess`` | ``quota`` (community|scope|id), ``pass_entries`` (community|pass), |
| | ``dedupe`` (community|subject|gate|direction) |
| ``FeverState`` | ``fever`` (community|subject, or community|device:<id>) |
| ``DeviceHealth`` | ``devices`` (community|device) |
| ``Observation`` | ``observation`` (community|resident) |
| ``Alerter`` | ``suppress`` (community|alert type|key) |

Event time (issue 9): each community's time is derived from the progress of its sources
(``EventClock``: the most advanced verified device, never backwards, once per batch). An
event stamped more than ``max_clock_skew_s`` after its Kafka timestamp is clamped to that
timestamp and raises DEVICE_CLOCK_SKEW (its decision is still made). An event more than
``allowed_lateness_s`` behind its community's time is *late*: counted (``stats['late_events']``,
``Output.late_event_ids``) and still given every output; exits and entries still count (the quota
is a count of real passes, counted both ways in event time), a late fever reading is still
screened (its alerts say ``late``); only drift samples are dropped.

What the events alone decide is deterministic: decisions, and the alerts raised by events and by
event-time progress (fever flow incl. FEVER_RECHECK_MISSED, DEVICE_SILENT of an active
community, drift, gate findings, reports). Wall-clock timers (``tick``): REPORT_OVERDUE and
OBSERVATION_COMPLETED (nothing arrives when a resident does not report), and, for a community
from which nothing arrived since the previous tick, FEVER_RECHECK_MISSED (window + lateness
passed on the wall clock) and DEVICE_SILENT. Their ids are deterministic; *when* they fire
depends on the clock. ``decided_at``/``created_at`` are the event time unless a ``now_ms`` is
passed.

Memory (docs/rules.md, "Memory"): ``sweep`` forgets each store's state older than its window at
the community's event time — and, from ``tick``, at a later time for a community whose time has
not moved for longer than ``silence_margin_s`` on the wall clock (``forgetting_times``), so every
store of a silent community shrinks back; forgotten keys are tombstoned in the changelog.

Reference data: ``residents``/``passes``/``vehicles``/``rules`` may be injected as Mappings (e.g.
backed by the worker's tables); ``vehicles`` is keyed by ``schemas.topics.vehicle_key``
(community, plate token), as on its topic. Every change must still be announced through
``upsert_*`` / ``delete_*``: they write through to mutable mappings and maintain the engine's own
indexes (the residents under home observation, the parsed rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from schemas.contract import MAX_ENTRY_LIMIT_WINDOW_S
from schemas.topics import vehicle_key
from streams.rules import alerts as A
from streams.rules.config import DEFAULT_RULES, CommunityRules
from streams.rules.gate_access import (
    ACTION_RANK,
    ALLOW,
    DENY,
    RECHECK,
    WARN,
    Finding,
    check_face_consent,
    strictest,
)
from streams.rules.temperature import HIGH, IMPLAUSIBLE, classify, recheck_key
from streams.rules.timeutil import MS_PER_SECOND
from streams.state.access import GateAccess, ReplayMemory
from streams.state.alerter import Alerter, fmt_c
from streams.state.clock import EventClock
from streams.state.devices import DeviceHealth
from streams.state.fever import FeverState
from streams.state.observation import Observation
from streams.state.store import KeyedStore
from streams.state.windows import EarlyWarning

Event = Mapping[str, Any]
Record = Mapping[str, Any]

SCAN = "scan"
READING = "reading"
REPORT = "report"
#: tie-break of one instant: a scan before the gate reading of the same measurement
KIND_ORDER = {SCAN: 0, READING: 1, REPORT: 2}

#: (kind, event, Kafka timestamp or None)
Item = tuple[str, Event, int | None]

_RANK_ALLOW = ACTION_RANK[ALLOW]
_RANK_WARN = ACTION_RANK[WARN]
_RANK_RECHECK = ACTION_RANK[RECHECK]


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


def _owns_all(community_id: str) -> bool:
    return True


class _Horizons(dict[str, int]):
    """Per-community horizons for a sweep; a community without an event time (one that only
    sent health reports) gets ``fallback(community)``, computed once."""

    __slots__ = ("_fallback",)

    def __init__(self, fallback: Callable[[str], int]) -> None:
        super().__init__()
        self._fallback = fallback

    def __missing__(self, cid: str) -> int:
        horizon = self[cid] = self._fallback(cid)
        return horizon

    def get(self, cid: str, default: Any = None) -> int:
        return self[cid]


def event_order(item: Item, max_skew_ms: int = 120_000) -> tuple[int, int, str]:
    """Sort key of merged events: event time (a future one clamped to its Kafka timestamp, as
    the engine will), then scan < reading < report, then id. ``RuleEngine.sort_key`` is this
    with the engine's own skew setting."""
    kind, ev, ts = item
    t: int = ev["event_time"]
    if ts is not None and ts > 0 and t > ts + max_skew_ms:
        t = ts
    return (t, KIND_ORDER[kind], ev["event_id"])


class RuleEngine:
    """Dispatches events to the state objects of one task (any number of communities)."""

    def __init__(
        self,
        *,
        allowed_lateness_s: int = 300,
        max_clock_skew_s: int = 120,
        residents: Mapping[str, Record] | None = None,
        passes: Mapping[str, Record] | None = None,
        vehicles: Mapping[str, Record] | None = None,
        rules: Mapping[str, Record] | None = None,
        replay_capacity: int = 200_000,
        sweep_interval_s: int = 60,
        device_forget_s: int = 7 * 86_400,
        silence_margin_s: int | None = 6 * 3_600,
        owns: Callable[[str], bool] = _owns_all,
    ) -> None:
        self.lateness_ms = allowed_lateness_s * MS_PER_SECOND
        self._owns = owns
        self._residents: Mapping[str, Record] = {} if residents is None else residents
        self._passes: Mapping[str, Record] = {} if passes is None else passes
        self._vehicles: Mapping[str, Record] = {} if vehicles is None else vehicles
        self._rule_records: Mapping[str, Record] = {} if rules is None else rules
        # An injected rules mapping may change behind our back: re-parse once per batch.
        self._rules_external = rules is not None
        self._rules: dict[str, CommunityRules] = {}
        self._sweep_interval_ms = sweep_interval_s * MS_PER_SECOND
        self._device_forget_ms = device_forget_s * MS_PER_SECOND
        # wall-clock forgetting of silent communities (``forgetting_times``), with a margin of at
        # least the allowed lateness; None: event time only (the engine before issue 20)
        self._silence_margin_ms = (
            None
            if silence_margin_s is None
            else max(silence_margin_s, allowed_lateness_s) * MS_PER_SECOND
        )
        # community -> (its time at a tick, wall clock of the first tick that saw that time)
        self._still: dict[str, tuple[int, int]] = {}
        self._last_sweep: int | None = None
        # communities that had events since the previous tick (wall-clock timers skip them)
        self._active: set[str] = set()

        self.stats: dict[str, int] = {
            "scans": 0,
            "readings": 0,
            "reports": 0,
            "late_events": 0,
            "replayed_events": 0,
            "skewed_events": 0,
            "duplicate_measurements": 0,
            "decisions": 0,
            "alerts": 0,
            "suppressed_alerts": 0,
            "expired_state": 0,
        }
        self.clock = EventClock(
            lateness_ms=self.lateness_ms, max_skew_ms=max_clock_skew_s * MS_PER_SECOND
        )
        self.replay = ReplayMemory(replay_capacity)
        self.access = GateAccess()
        self.fever = FeverState()
        self.devices = DeviceHealth()
        self.observation = Observation()
        self.windows = EarlyWarning()  # clusters, occupancy, gate refusal rates (issue 20)
        self.alerter = Alerter(self.stats)
        self._stores: dict[str, KeyedStore[Any]] = {}
        all_stores: list[KeyedStore[Any]] = [
            self.clock.store,
            self.replay.store,
            *self.access.stores(),
            self.fever.store,
            self.devices.store,
            self.observation.store,
            self.alerter.store,
            *self.windows.stores(),
        ]
        for store in all_stores:
            if store.name in self._stores:
                raise ValueError(f"two stores named {store.name!r}")
            self._stores[store.name] = store
        self._restored: dict[str, Callable[[str], None]] = {
            self.fever.store.name: self.fever.restored,
            self.devices.store.name: self.devices.restored,
            self.replay.store.name: self.replay.restored,
            **self.windows.restore_hooks(),
        }
        for rid, rec in self._residents.items():
            self.observation.index(rid, rec)

    def sort_key(self, item: Item) -> tuple[int, int, str]:
        """Order of a batch for ``on_events`` (``event_order`` with this engine's skew)."""
        return event_order(item, self.clock.max_skew_ms)

    # ------------------------------------------------------------------ state interface

    def stores(self) -> list[KeyedStore[Any]]:
        """Every store of this task (unique names)."""
        return list(self._stores.values())

    def take_changes(self) -> list[tuple[str, str, bytes | None]]:
        """(store, key, encoded value or None) of every key changed since the last call, in
        store then key order (the same events give the same changelog)."""
        changes: list[tuple[str, str, bytes | None]] = []
        append = changes.append
        for name in sorted(self._stores):
            store = self._stores[name]
            if store.has_changes():
                for key, raw in store.take_changes():
                    append((name, key, raw))
        return changes

    def restore(self, store: str, key: str, raw: bytes | None) -> None:
        """Apply one changelog record (before any event of the task is processed)."""
        target = self._stores.get(store)
        if target is None:
            raise KeyError(f"no store named {store!r}")
        target.restore(key, raw)
        if store == self.clock.store.name:
            # a restored task has not seen the lost one's ticks: its first tick treats the
            # community as active (no wall-clock timer on it before the next tick)
            self._active.add(key)
        hook = self._restored.get(store)
        if hook is not None:
            hook(key)

    # ------------------------------------------------------------------ reference data

    def upsert_resident(self, record: Record) -> None:
        rid = record["resident_id"]
        if isinstance(self._residents, MutableMapping):
            self._residents[rid] = record
        self.observation.index(rid, record)

    def delete_resident(self, resident_id: str) -> None:
        if isinstance(self._residents, MutableMapping):
            self._residents.pop(resident_id, None)
        self.observation.index(resident_id, None)

    def upsert_pass(self, record: Record) -> None:
        if isinstance(self._passes, MutableMapping):
            self._passes[record["pass_id"]] = record

    def delete_pass(self, pass_id: str) -> None:
        if isinstance(self._passes, MutableMapping):
            self._passes.pop(pass_id, None)

    def upsert_vehicle(self, record: Record) -> None:
        """A registration of a vehicle in its community: one per (community, plate token), so a
        plate registered in two communities holds in both (issue 20)."""
        if isinstance(self._vehicles, MutableMapping):
            self._vehicles[vehicle_key(record["community_id"], record["vehicle_id"])] = record

    def delete_vehicle(self, key: str) -> None:
        """``key``: the registration's ``vehicle_key(community_id, vehicle_id)`` — its Kafka key
        on ``reference.vehicles``; another community's registration of the plate stays."""
        if isinstance(self._vehicles, MutableMapping):
            self._vehicles.pop(key, None)

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

    def bind_reference(
        self,
        *,
        residents: Mapping[str, Record] | None = None,
        passes: Mapping[str, Record] | None = None,
        vehicles: Mapping[str, Record] | None = None,
        rules: Mapping[str, Record] | None = None,
        observed: Iterable[tuple[str, Record]] | None = None,
    ) -> None:
        """Use these mappings for reference lookups from now on (e.g. the worker's store).

        ``observed``: the residents under home observation among ``residents``, when the
        caller has them already (a process with one engine per task decodes the register once,
        not once per engine)."""
        if residents is not None:
            self._residents = residents
            self.observation.observed.clear()
            for rid, rec in residents.items() if observed is None else observed:
                self.observation.index(rid, rec)
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

    def on_events(self, items: Iterable[Item], now_ms: int | None = None) -> Output:
        """One partition batch: scans, readings and reports, processed in the order given (the
        caller sorts a poll with ``sort_key``). Every scan gets one GateDecision."""
        out = Output()
        if self._rules_external:
            self._rules.clear()
        touched: set[str] = set()
        stats = self.stats
        for kind, ev, broker_ts in items:
            if kind == SCAN:
                stats["scans"] += 1
                self._scan(ev, broker_ts, now_ms, out, touched)
            elif kind == READING:
                stats["readings"] += 1
                self._reading(ev, broker_ts, now_ms, out, touched)
            elif kind == REPORT:
                stats["reports"] += 1
                self._report(ev, broker_ts, now_ms, out, touched)
            else:
                raise ValueError(f"unknown event kind {kind!r}")
        self._end_batch(touched, now_ms, out)
        self.replay.seal()
        stats["decisions"] += len(out.decisions)
        return out

    def on_scans(self, events: Iterable[Event], now_ms: int | None = None) -> Output:
        return self.on_events([(SCAN, ev, None) for ev in events], now_ms)

    def on_readings(self, events: Iterable[Event], now_ms: int | None = None) -> Output:
        return self.on_events([(READING, ev, None) for ev in events], now_ms)

    def on_reports(self, events: Iterable[Event], now_ms: int | None = None) -> Output:
        return self.on_events([(REPORT, ev, None) for ev in events], now_ms)

    def _end_batch(self, touched: set[str], now_ms: int | None, out: Output) -> None:
        """Event-time progress of the batch's communities: recompute their time, then close
        the recheck windows and find the silences it passed (beyond the allowed lateness)."""
        self._active |= touched
        for cid in sorted(touched):
            now = self.clock.advance(cid)
            if now is None:
                continue
            rules = self.rules_for(cid)
            until = now - self.lateness_ms
            self.fever.close(out.alerts, self.alerter, rules, cid, until, now_ms)
            self.devices.close(out.alerts, self.alerter, rules, cid, until, now_ms)
            self.windows.close(out.alerts, self.alerter, rules, cid, until, now_ms)

    def _time(
        self,
        ev: Event,
        broker_ts: int | None,
        cid: str,
        rules: CommunityRules,
        created_at: int | None,
        out: Output,
        touched: set[str],
    ) -> tuple[int, bool]:
        """(event time to use, late) of an event; clamps and alerts a future clock."""
        t: int = ev["event_time"]
        device_id = ev.get("device_id") or "app:" + str(ev.get("resident_id", ""))
        if broker_ts is not None and self.clock.skewed(t, broker_ts):
            self.stats["skewed_events"] += 1
            self._skew_alert(ev, cid, rules, t, broker_ts, created_at, out)
            t = broker_ts
        touched.add(cid)
        late = self.clock.observe(cid, device_id, t, broker_ts is not None and broker_ts > 0)
        if late:
            out.late += 1
            out.late_event_ids.append(ev["event_id"])
            self.stats["late_events"] += 1
        return t, late

    def _skew_alert(
        self,
        ev: Event,
        cid: str,
        rules: CommunityRules,
        t: int,
        broker_ts: int,
        created_at: int | None,
        out: Output,
    ) -> None:
        device_id = ev.get("device_id")
        self.alerter.emit(
            out.alerts,
            alert_type=A.DEVICE_CLOCK_SKEW,
            severity=A.WARNING,
            community_id=cid,
            cause=ev["event_id"],
            sources=[ev["event_id"]],
            event_time=broker_ts,
            created_at=broker_ts if created_at is None else created_at,
            suppress_key="device:" + str(device_id),
            window_ms=rules.alert_suppression_s * MS_PER_SECOND,
            gate_id=ev.get("gate_id"),
            device_id=device_id,
            details={
                "event_time": str(t),
                "broker_time": str(broker_ts),
                # rounded up: skewed means more than max_skew_s ahead, so 120.4 s reads
                # "121 s ahead (allowed 120 s)", never "120 s ahead (allowed 120 s)"
                "ahead_s": str(-((broker_ts - t) // MS_PER_SECOND)),
                "max_skew_s": str(self.clock.max_skew_ms // MS_PER_SECOND),
            },
        )

    # ------------------------------------------------------------------ readings

    def _reading(
        self,
        ev: Event,
        broker_ts: int | None,
        now_ms: int | None,
        out: Output,
        touched: set[str],
    ) -> None:
        event_id = ev["event_id"]
        if event_id in self.replay:
            self.stats["replayed_events"] += 1
            return
        cid = ev["community_id"]
        rules = self._rules.get(cid) or self.rules_for(cid)
        t, late = self._time(ev, broker_ts, cid, rules, now_ms, out, touched)
        self.replay.remember(event_id, cid, t, None)
        gate_id = ev["gate_id"]
        device_id = ev["device_id"]
        dev = self.devices.seen(cid, device_id, gate_id, t, ev["sensor"] == "INFRARED_GATE")
        self._temperature(
            out,
            rules,
            cid,
            event_id,
            t,
            ev["temperature_c"],
            gate_id,
            dev,
            ev.get("subject_id"),
            late,
            t if now_ms is None else now_ms,
            ev["sensor"] != "INFRARED_GATE",
        )

    def _temperature(
        self,
        out: Output,
        rules: CommunityRules,
        cid: str,
        event_id: str,
        t: int,
        temperature_c: float,
        gate_id: str,
        dev: Any,
        subject_id: str | None,
        late: bool,
        created_at: int,
        handheld: bool = False,
    ) -> tuple[int, str]:
        """One measurement into device health and the fever flow: (its class, its role for the
        scan's reasons). Raises TEMPERATURE_IMPLAUSIBLE and the fever alerts."""
        kind = classify(temperature_c, rules)
        device_id = dev.device_id
        if not late:
            self.devices.observe(
                out.alerts,
                self.alerter,
                rules,
                cid,
                dev,
                event_id,
                t,
                temperature_c,
                kind != IMPLAUSIBLE,
                created_at,
            )
        if kind == IMPLAUSIBLE:
            self.alerter.emit(
                out.alerts,
                alert_type=A.TEMPERATURE_IMPLAUSIBLE,
                severity=A.WARNING if subject_id else A.INFO,
                community_id=cid,
                cause=event_id,
                sources=[event_id],
                event_time=t,
                created_at=created_at,
                suppress_key=recheck_key(subject_id, device_id),
                window_ms=rules.alert_suppression_s * MS_PER_SECOND,
                gate_id=gate_id,
                device_id=device_id,
                subject_id=subject_id,
                details={
                    "temperature_c": fmt_c(temperature_c),
                    "plausible_min_c": fmt_c(rules.plausible_min_c),
                    "plausible_max_c": fmt_c(rules.plausible_max_c),
                },
            )
            return kind, ""
        first_alert = len(out.alerts)
        role = self.fever.observe(
            out.alerts,
            self.alerter,
            rules,
            cid,
            event_id,
            t,
            temperature_c,
            kind == HIGH,
            gate_id,
            device_id,
            subject_id,
            created_at,
            late,
            handheld,
        )
        if len(out.alerts) > first_alert:  # a confirmed fever is a case of a cluster
            new = out.alerts[first_alert:]
            self.windows.fever_alerts(
                out.alerts, new, self.alerter, rules, self._residents, created_at
            )
        return kind, role

    # ------------------------------------------------------------------ gate scans

    def _scan(
        self,
        ev: Event,
        broker_ts: int | None,
        now_ms: int | None,
        out: Output,
        touched: set[str],
    ) -> None:
        event_id = ev["event_id"]
        previous = self.replay.decision(event_id)
        if previous is not None:
            self.stats["replayed_events"] += 1
            out.decisions.append(previous)
            return
        cid = ev["community_id"]
        rules = self._rules.get(cid) or self.rules_for(cid)
        t, late = self._time(ev, broker_ts, cid, rules, now_ms, out, touched)
        created_at = t if now_ms is None else now_ms
        gate_id = ev["gate_id"]
        device_id = ev["device_id"]
        subject_type = ev["subject_type"]
        subject_id = ev["subject_id"]
        dev = self.devices.seen(cid, device_id, gate_id, t, True)  # a gate's scanner
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

        observation_over = (
            resident is not None
            and resident.get("status") == "HOME_OBSERVATION"
            and self.observation.completed(cid, subject_id)
        )
        pending = self.access.observe(
            ev,
            cid,
            t,
            rules,
            resident,
            self._passes.get(subject_id) if subject_type == "VISITOR" else None,
            self._vehicles.get(vehicle_key(cid, subject_id)) if subject_type == "VEHICLE" else None,
            observation_over,
        )
        reasons: list[str] = []
        rank = _RANK_ALLOW
        action = ALLOW
        window_ms = rules.alert_suppression_s * MS_PER_SECOND
        for found in pending.findings:  # rare: most passes fire no rule
            reasons.append(found.alert_type)
            action = strictest(action, found.action)
            rank = ACTION_RANK[action]
            details = found.details
            if found.alert_type == A.ENTRY_LIMIT_EXCEEDED and pending.limit is not None:
                details["limit_key"] = A.mask(pending.limit[2])
            self.alerter.emit(
                out.alerts,
                alert_type=found.alert_type,
                severity=found.severity,
                community_id=cid,
                cause=event_id,
                sources=[event_id],
                event_time=t,
                created_at=created_at,
                suppress_key=subject_id or gate_id,
                window_ms=window_ms,
                gate_id=gate_id,
                device_id=device_id,
                subject_id=subject_id,
                details=details,
            )

        if temperature_c is not None:
            kind, role = self._temperature(
                out,
                rules,
                cid,
                event_id,
                t,
                temperature_c,
                gate_id,
                dev,
                subject_id,
                late,
                created_at,
            )
            if kind == IMPLAUSIBLE:
                reasons.append(A.TEMPERATURE_IMPLAUSIBLE)
                if rank < _RANK_WARN:
                    rank, action = _RANK_WARN, WARN
            elif kind == HIGH:
                reasons.append(role or A.FEVER_RECHECK)
                if rank < _RANK_RECHECK:
                    rank, action = _RANK_RECHECK, RECHECK
            elif role:
                reasons.append(role)

        if action != DENY:
            self.access.record(pending, t)
        self.windows.scan(
            out.alerts, self.alerter, rules, ev, t, late, action, reasons, pending.repeat,
            created_at,
        )  # fmt: skip

        decision = {
            "event_id": event_id,
            "community_id": cid,
            "gate_id": gate_id,
            "subject_id": subject_id,
            "decision": action,
            "reasons": reasons,
            "decided_at": created_at,
        }
        self.replay.remember(event_id, cid, t, decision)
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
        dev: Any,
        temperature_c: float | None,
        late: bool,
    ) -> None:
        """A face match without consent: a rejection record without the face-derived identity.
        Its temperature is still screened, as a subject-less reading of the gate's device (the
        person is not identified, the fever is: issue 20, behaviour 7) — a fever opens a recheck
        keyed by the device, raised once the lateness has passed, like any subject-less gate
        reading. The decision names it by the reading's class alone (FEVER_RECHECK,
        TEMPERATURE_IMPLAUSIBLE), never by a recheck it may decide."""
        event_id = ev["event_id"]
        gate_id = ev["gate_id"]
        device_id = ev["device_id"]
        reasons = [refused.alert_type]
        self.alerter.emit(
            out.alerts,
            alert_type=refused.alert_type,
            severity=refused.severity,
            community_id=cid,
            cause=event_id,
            sources=[event_id],
            event_time=t,
            created_at=created_at,
            suppress_key="device:" + device_id,
            window_ms=rules.alert_suppression_s * MS_PER_SECOND,
            gate_id=gate_id,
            device_id=device_id,
            subject_id=None,
            details=refused.details,
        )
        if temperature_c is not None:
            kind, _ = self._temperature(
                out, rules, cid, event_id, t, temperature_c, gate_id, dev, None, late, created_at
            )
            if kind == IMPLAUSIBLE:
                reasons.append(A.TEMPERATURE_IMPLAUSIBLE)
            elif kind == HIGH:
                reasons.append(A.FEVER_RECHECK)
        decision = {
            "event_id": event_id,
            "community_id": cid,
            "gate_id": gate_id,
            "subject_id": A.REDACTED,
            "decision": refused.action,
            "reasons": reasons,
            "decided_at": created_at,
        }
        self.windows.scan(
            out.alerts, self.alerter, rules, ev, t, late, refused.action, reasons,
            False, created_at,
        )  # fmt: skip
        self.replay.remember(event_id, cid, t, decision)
        out.decisions.append(decision)

    # ------------------------------------------------------------------ health reports

    def _report(
        self,
        ev: Event,
        broker_ts: int | None,
        now_ms: int | None,
        out: Output,
        touched: set[str],
    ) -> None:
        event_id = ev["event_id"]
        if event_id in self.replay:
            self.stats["replayed_events"] += 1
            return
        cid = ev["community_id"]
        rules = self._rules.get(cid) or self.rules_for(cid)
        # reports come from the residents' app: they neither move nor are judged by the
        # community's device clock, but a future date is still clamped
        t: int = ev["event_time"]
        if broker_ts is not None and self.clock.skewed(t, broker_ts):
            self.stats["skewed_events"] += 1
            t = broker_ts
        self.replay.remember(event_id, cid, t, None)
        self.observation.observe(
            out.alerts, self.alerter, rules, ev, t, t if now_ms is None else now_ms
        )
        sealed = self.clock.time(cid)
        self.windows.report(
            out.alerts, self.alerter, rules, ev, self._residents.get(ev["resident_id"]), t,
            sealed is not None and t < sealed - self.lateness_ms, t if now_ms is None else now_ms,
        )  # fmt: skip

    # ------------------------------------------------------------------ timers

    def tick(self, now_ms: int) -> Output:
        """Timer rules at wall-clock ``now_ms`` (see the module docstring): overdue reports,
        observation completed; missed rechecks and silent devices of quiet communities; and,
        every ``sweep_interval_s``, expiry of state older than its window (+ lateness)."""
        out = Output()
        if self._rules_external:
            self._rules.clear()
        owns = self._owns
        quiet_until = now_ms - self.lateness_ms
        for cid in sorted(
            set(self.fever.communities())
            | set(self.devices.communities())
            | self.windows.communities()
        ):
            if cid in self._active or not owns(cid):
                continue
            rules = self.rules_for(cid)
            self.fever.close(out.alerts, self.alerter, rules, cid, quiet_until, now_ms)
            self.devices.close(out.alerts, self.alerter, rules, cid, now_ms, now_ms)
            self.windows.close(out.alerts, self.alerter, rules, cid, quiet_until, now_ms)
        self._active.clear()
        self.observation.tick(out.alerts, self.alerter, self.rules_for, now_ms, owns)
        self._track_silence(now_ms)
        if self._last_sweep is None or now_ms - self._last_sweep >= self._sweep_interval_ms:
            self._last_sweep = now_ms
            self.sweep(now_ms)
        return out

    def _track_silence(self, now_ms: int) -> None:
        """Note, per community, since when (wall clock, at tick resolution) its time has not
        moved. In memory only: a restored task starts counting at its first tick, so it forgets
        later, never earlier."""
        still = self._still
        for cid in self.clock.communities():
            t = self.clock.time(cid)
            if t is None:
                continue
            seen = still.get(cid)
            if seen is None or seen[0] != t:
                still[cid] = (t, now_ms)

    def forgetting_times(self, now_ms: int | None = None) -> dict[str, int]:
        """The time each community's state is forgotten at: its event time, or — when its time
        has not moved for longer than ``silence_margin_s`` on the wall clock (``now_ms``) — the
        time it would have reached had it kept running since, less the margin:
        ``time + (now - still since) - margin``. State is forgotten exactly as event time would
        forget it at that time, so no event at least the allowed lateness after it (an event of
        a community that resumes) is decided otherwise (docs/rules.md, "Memory")."""
        margin = self._silence_margin_ms
        times: dict[str, int] = {}
        for cid in self.clock.communities():
            t = self.clock.time(cid)
            if t is None:
                continue
            if margin is not None and now_ms is not None:
                seen = self._still.get(cid)
                if seen is not None and seen[0] == t:
                    t = max(t, t + (now_ms - seen[1]) - margin)
            times[cid] = t
        return times

    def sweep(self, now_ms: int | None = None) -> int:
        """Expire state older than its window (+ lateness), per community: at its event time,
        or at the later time ``forgetting_times(now_ms)`` gives a silent community. Communities
        with no event time (health reports only) forget by the wall clock less the margin."""
        lateness = self.lateness_ms
        dropped = 0
        times = self.forgetting_times(now_ms)
        margin = self._silence_margin_ms
        wall = None if margin is None or now_ms is None else now_ms - margin

        def clockless(offset: Callable[[CommunityRules], int]) -> Callable[[str], int]:
            if wall is None:
                return lambda cid: 0
            return lambda cid: wall - offset(self.rules_for(cid))

        horizons_dedupe: dict[str, int] = {}
        horizons_suppress = _Horizons(
            clockless(lambda r: 2 * r.alert_suppression_s * MS_PER_SECOND + lateness)
        )
        horizons_quota: dict[str, int] = {}
        keep_quota: dict[str, int] = {}
        horizons_replay = _Horizons(clockless(lambda r: 2 * lateness + 3_600_000))
        horizons_pass: dict[str, int] = {}
        # pass history is kept for the longest window a community may configure, so a raised
        # window counts the older passes at once (issue 20, behaviour 6)
        keep_passes = MAX_ENTRY_LIMIT_WINDOW_S * MS_PER_SECOND
        for cid, now in times.items():
            rules = self.rules_for(cid)
            horizons_dedupe[cid] = now - rules.dedupe_window_s * MS_PER_SECOND - lateness
            horizons_suppress[cid] = now - 2 * rules.alert_suppression_s * MS_PER_SECOND - lateness
            horizons_quota[cid] = now - lateness
            keep_quota[cid] = keep_passes
            horizons_replay[cid] = now - 2 * lateness - 3_600_000
            horizons_pass[cid] = now - lateness
            dropped += self.fever.expire(
                cid, now - rules.recheck_window_s * MS_PER_SECOND - lateness
            )
            dropped += self.devices.expire(
                cid, now - rules.drift_window_s * MS_PER_SECOND, now - self._device_forget_ms
            )
        dropped += self.access.expire(
            horizons_dedupe, horizons_quota, keep_quota, self._passes, horizons_pass
        )
        dropped += self.alerter.expire(horizons_suppress)
        dropped += self.replay.expire(horizons_replay)
        # at the forgetting time: a silent community's windows go on the wall clock too
        sealed = {cid: t - lateness for cid, t in times.items()}
        dropped += self.windows.expire(sealed, self.rules_for)
        dropped += self.clock.expire(self._device_forget_ms, times)
        dropped += self.observation.expire(now_ms, self.rules_for)
        self.stats["expired_state"] += dropped
        return dropped

    def state_sizes(self) -> dict[str, int]:
        """Entries held per kind of state (for metrics)."""
        recheck_keys, open_rechecks = self.fever.sizes()
        return {
            "recheck_keys": recheck_keys,
            "open_rechecks": open_rechecks,
            "devices": self.devices.count(),
            "quota_keys": len(self.access.quota),
            "dedupe_keys": len(self.access.dedupe),
            "suppression_keys": len(self.alerter.suppressor),
            "pass_entries": len(self.access.pass_entries),
            "observed_residents": len(self.observation.observed),
            "replay_ids": len(self.replay),
            **self.windows.sizes(),
        }

    def watermark(self, community_id: str) -> int | None:
        """The community's event time (``EventClock``)."""
        return self.clock.time(community_id)
