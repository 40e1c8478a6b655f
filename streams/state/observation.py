"""Home observation: the state object for residents' daily health reports.

Store ``observation`` (key ``community|resident``, value an ``ObservationLog``): the days
reported, the clean days, the days REPORT_OVERDUE was raised, whether a report had symptoms or a
fever, and whether OBSERVATION_COMPLETED was raised. The residents under observation (community,
first day) are an index of the reference data, not state.

* ``observe``: a report — SYMPTOMS_REPORTED / FEVER_REPORTED / TEMPERATURE_IMPLAUSIBLE (windowed
  per resident) and the day it covers. A report counts for its ``report_date``, but never for a
  day after the one it was sent on (fourteen reports sent on day 0 cover day 0 only).
* ``tick`` (wall clock; only communities ``owns`` accepts): REPORT_OVERDUE once per resident and
  day after the local deadline — not on the first day of the observation (imposed at 15:00, the
  10:00 deadline was never theirs to meet) — and OBSERVATION_COMPLETED once every day of the
  period was reported clean *and* the period is over in local time.
* a self-reported temperature outside the plausible range is reported but not a clean day: the
  resident is asked (TEMPERATURE_IMPLAUSIBLE) to measure again; a plausible report the same day
  makes it clean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.health_reports import (
    ObservationLog,
    decode_log,
    encode_log,
    is_overdue,
    reported_fever,
    symptoms_severity,
)
from streams.rules.temperature import within_plausible
from streams.rules.timeutil import MS_PER_SECOND, clock_for, format_day, format_minute
from streams.state.alerter import Alerter, fmt_c
from streams.state.store import KeyedStore

Record = Mapping[str, Any]


class Observation:
    __slots__ = ("observed", "store")

    def __init__(self) -> None:
        self.store: KeyedStore[ObservationLog] = KeyedStore(
            "observation", encode=encode_log, decode=decode_log
        )
        # residents under HOME_OBSERVATION: resident_id -> (community_id, observation_start)
        self.observed: dict[str, tuple[str, int | None]] = {}

    # -- reference index
    def index(self, rid: str, record: Record | None) -> None:
        if record is None or record.get("status") != "HOME_OBSERVATION":
            previous = self.observed.pop(rid, None)
            if previous is not None:
                self.store.pop(previous[0] + "|" + rid)
            return
        cid = record["community_id"]
        start = record.get("observation_start")
        previous = self.observed.get(rid)
        if previous is not None and previous != (cid, start):
            self.store.pop(previous[0] + "|" + rid)  # a new observation period: a new log
        self.observed[rid] = (cid, start)

    def completed(self, cid: str, rid: str) -> bool:
        log = self.store.get(cid + "|" + rid)
        return log is not None and log.completed

    def _log(self, cid: str, rid: str) -> ObservationLog:
        key = cid + "|" + rid
        log = self.store.get(key)
        if log is None:
            log = ObservationLog()
            self.store[key] = log
        else:
            self.store.touch(key)
        return log

    def observe(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        ev: Mapping[str, Any],
        t: int,
        created_at: int,
    ) -> None:
        event_id = ev["event_id"]
        cid = ev["community_id"]
        rid = ev["resident_id"]
        window_ms = rules.alert_suppression_s * MS_PER_SECOND
        symptoms = ev.get("symptoms") or ()
        severity = symptoms_severity(symptoms)
        if severity is not None:
            alerter.emit(
                alerts,
                alert_type=A.SYMPTOMS_REPORTED,
                severity=severity,
                community_id=cid,
                cause=event_id,
                sources=[event_id],
                event_time=t,
                created_at=created_at,
                suppress_key=rid,
                window_ms=window_ms,
                subject_id=rid,
                details={
                    "symptoms": ",".join(symptoms),
                    "symptoms_zh": "、".join(A.label_zh(s) for s in symptoms),
                },
            )
        temperature_c = ev.get("temperature_c")
        fever = reported_fever(temperature_c, rules)
        plausible = temperature_c is None or within_plausible(temperature_c, rules)
        if temperature_c is not None and (fever or not plausible):
            # a reported fever, or a reading no thermometer gives: one alert, by its kind
            alert_type, severity, details = (
                (
                    A.FEVER_REPORTED,
                    A.WARNING,
                    {
                        "temperature_c": fmt_c(temperature_c),
                        "threshold_c": fmt_c(rules.fever_threshold_c),
                    },
                )
                if fever
                else (
                    A.TEMPERATURE_IMPLAUSIBLE,
                    A.INFO,
                    {
                        "temperature_c": fmt_c(temperature_c),
                        "plausible_min_c": fmt_c(rules.plausible_min_c),
                        "plausible_max_c": fmt_c(rules.plausible_max_c),
                    },
                )
            )
            alerter.emit(
                alerts,
                alert_type=alert_type,
                severity=severity,
                community_id=cid,
                cause=event_id,
                sources=[event_id],
                event_time=t,
                created_at=created_at,
                suppress_key=rid,
                window_ms=window_ms,
                subject_id=rid,
                details=details,
            )
        observed = self.observed.get(rid)
        if observed is None or observed[0] != cid:
            return
        start = observed[1]
        sent_on = clock_for(rules.timezone).local_day(t)
        day = ev.get("report_date")
        if day is None or day > sent_on:
            day = sent_on
        log = self._log(cid, rid)
        log.record(day, severity is None and not fever, start, rules.observation_days, plausible)
        self._maybe_completed(alerts, alerter, rules, cid, rid, log, start, sent_on, t, created_at)

    def _maybe_completed(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        rid: str,
        log: ObservationLog,
        start: int | None,
        today: int,
        event_time: int,
        created_at: int,
    ) -> None:
        if log.completed or not log.is_complete(start, rules.observation_days, today):
            return
        log.completed = True
        self.store.touch(cid + "|" + rid)
        alerter.emit(
            alerts,
            alert_type=A.OBSERVATION_COMPLETED,
            severity=A.INFO,
            community_id=cid,
            cause=f"{rid}|{start}",
            sources=[],
            event_time=event_time,
            created_at=created_at,
            subject_id=rid,
            details={
                "observation_days": str(rules.observation_days),
                "observation_start": str(start),
            },
        )

    def tick(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules_for: Callable[[str], CommunityRules],
        now_ms: int,
        owns: Callable[[str], bool],
    ) -> None:
        """Wall-clock timers: REPORT_OVERDUE and OBSERVATION_COMPLETED."""
        local: dict[str, tuple[int, int] | None] = {}
        for rid, (cid, start) in self.observed.items():
            if cid in local:
                today_minute = local[cid]
            else:
                today_minute = local[cid] = None
                if owns(cid):
                    clock = clock_for(rules_for(cid).timezone)
                    today_minute = local[cid] = (
                        clock.local_day(now_ms),
                        clock.minute_of_day(now_ms),
                    )
            if today_minute is None:
                continue
            today, minute = today_minute
            rules = rules_for(cid)
            key = cid + "|" + rid
            log = self.store.get(key)
            if log is not None and not log.completed:
                self._maybe_completed(
                    alerts, alerter, rules, cid, rid, log, start, today, now_ms, now_ms
                )
            if (log is not None and (today in log.reported or today in log.overdue_alerted)) or (
                start is not None and today <= start
            ):
                continue
            if not is_overdue(
                today, minute, rules.report_deadline_minute, start, rules.observation_days
            ):
                continue
            log = self._log(cid, rid)
            log.overdue_alerted.add(today)
            deadline = clock_for(rules.timezone).to_epoch_ms(today, rules.report_deadline_minute)
            alerter.emit(
                alerts,
                alert_type=A.REPORT_OVERDUE,
                severity=A.WARNING,
                community_id=cid,
                cause=f"{rid}|{today}",
                sources=[],
                event_time=deadline,
                created_at=now_ms,
                subject_id=rid,
                details={
                    "date": format_day(today),
                    "deadline": format_minute(rules.report_deadline_minute),
                },
            )

    def expire(
        self,
        now_ms: int | None = None,
        rules_for: Callable[[str], CommunityRules] | None = None,
    ) -> int:
        """Logs of residents no longer under observation. With the wall clock (``now_ms``), also
        the days before yesterday of a log whose observation has no start: without a period
        nothing is ever completed, and the timers look at today only, so those days decide
        nothing (with a start, a log holds the days of its period at most)."""
        stale = [k for k in self.store if k.partition("|")[2] not in self.observed]
        for k in stale:
            self.store.pop(k)
        dropped = len(stale)
        if now_ms is None or rules_for is None:
            return dropped
        for rid, (cid, start) in self.observed.items():
            if start is not None:
                continue
            key = cid + "|" + rid
            log = self.store.get(key)
            if log is None:
                continue
            keep_from = clock_for(rules_for(cid).timezone).local_day(now_ms) - 1
            trimmed = False
            for days in (log.reported, log.clean_days, log.overdue_alerted):
                old = [d for d in days if d < keep_from]
                if old:
                    days.difference_update(old)
                    dropped += len(old)
                    trimmed = True
            if trimmed:
                self.store.touch(key)
        return dropped
