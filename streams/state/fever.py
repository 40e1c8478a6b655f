"""Fever rechecks: the state object of the temperature screening flow.

One ``FeverRecheck`` (``streams.rules.temperature``) per community over one shared store
``fever`` (key ``community|subject-or-device``). ``observe`` takes a plausible reading and raises
the flow's alerts (FEVER_RECHECK, FEVER_CONFIRMED, FEVER_CLEARED); ``close`` declares the
rechecks whose window the community's *event time* has passed — beyond the allowed lateness, so
a recheck that is still on its way can decide it first — FEVER_RECHECK_MISSED; ``expire`` drops
old readings. The flow's alerts are episode alerts (not window-suppressed): each recheck has its
own, with ids from its measurements (device and instant), so two people's fevers at one device
are never merged, and a gate's scan and its reading of one instant give the same ids whichever
arrives first.
"""

from __future__ import annotations

from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.temperature import (
    DUPLICATE,
    FeverOutcome,
    FeverRecheck,
    Reading,
    fever_store,
)
from streams.rules.timeutil import MS_PER_SECOND
from streams.state.alerter import Alerter, fmt_c
from streams.state.store import KeyedStore

_SEVERITY = {
    A.FEVER_RECHECK: A.WARNING,
    A.FEVER_CONFIRMED: A.CRITICAL,
    A.FEVER_CLEARED: A.INFO,
}


def measurement(r: Reading) -> str:
    """The identity of a measurement for alert ids: device, instant and subject, not the event
    that carried it (a gate's scan and its reading of one instant are one measurement, and
    whichever arrives first must give the alert the same id; two people measured by one device
    in the same millisecond are two)."""
    return f"{r.device_id}@{r.event_time}|{r.subject_id or ''}"


class FeverState:
    __slots__ = ("_by_cid", "store")

    def __init__(self) -> None:
        self.store: KeyedStore[Any] = fever_store()
        self._by_cid: dict[str, FeverRecheck] = {}

    def _recheck(self, cid: str) -> FeverRecheck:
        fever = self._by_cid.get(cid)
        if fever is None:
            fever = self._by_cid[cid] = FeverRecheck(self.store, cid + "|")
        return fever

    def restored(self, key: str) -> None:
        self._recheck(key.partition("|")[0]).restored(key)

    def communities(self) -> list[str]:
        return list(self._by_cid)

    def observe(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        event_id: str,
        t: int,
        temperature_c: float,
        high: bool,
        gate_id: str,
        device_id: str,
        subject_id: str | None,
        created_at: int,
        late: bool,
        handheld: bool = False,
    ) -> str:
        """Feed one plausible reading; returns its role for its scan's decision reasons
        (FEVER_RECHECK, FEVER_CONFIRMED, FEVER_CLEARED or empty)."""
        fever = self._recheck(cid)
        key = fever.key_for(subject_id, device_id, t)
        reading = Reading(event_id, t, temperature_c, high, gate_id, device_id, subject_id)
        if high and (handheld or key.startswith("device:")):
            # announced once no earlier reading (handheld) or the scan of its instant (a gate
            # reading without subject) can still arrive: the same alerts in any arrival order
            reading.announced = False
        outcome = fever.observe(key, reading, rules.recheck_window_s * MS_PER_SECOND)
        if fever.adopted:
            for adopted in fever.adopted:
                if adopted.opened:
                    opener = FeverOutcome(A.FEVER_RECHECK, adopted.first, None)
                    self._alert(alerts, alerter, rules, cid, opener, created_at, late)
                self._alert(alerts, alerter, rules, cid, adopted, created_at, late)
            fever.adopted.clear()
        if outcome is DUPLICATE:
            return self.role_of(cid, key, device_id, t)
        if isinstance(outcome, FeverOutcome):
            if outcome.opened:
                self._alert(
                    alerts,
                    alerter,
                    rules,
                    cid,
                    FeverOutcome(A.FEVER_RECHECK, outcome.first, None),
                    created_at,
                    late,
                )
            self._alert(alerts, alerter, rules, cid, outcome, created_at, late)
        return reading.role

    def role_of(self, cid: str, key: str, device_id: str, t: int) -> str:
        state = self.store.get(cid + "|" + key)
        if state is not None:
            for r in state.recent:
                if r.event_time == t and r.device_id == device_id:
                    return str(r.role)
        return ""

    def _alert(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        outcome: FeverOutcome,
        created_at: int,
        late: bool,
    ) -> None:
        first, second = outcome.first, outcome.second
        last = second if second is not None else first
        sources = [first.event_id] if second is None else [first.event_id, second.event_id]
        details = {
            "temperature_c": fmt_c(last.temperature_c),
            "first_temperature_c": fmt_c(first.temperature_c),
            "threshold_c": fmt_c(rules.fever_threshold_c),
            "recheck_min": f"{rules.recheck_window_s / 60:g}",
        }
        if outcome.alert_type == A.FEVER_CLEARED:
            details["notify"] = "false"  # recorded, no staff alert
        if late:
            details["late"] = "true"
        alerter.emit(
            alerts,
            alert_type=outcome.alert_type,
            severity=_SEVERITY[outcome.alert_type],
            community_id=cid,
            cause="|".join(measurement(r) for r in (first, second) if r is not None),
            sources=sources,
            event_time=last.event_time,
            created_at=created_at,
            gate_id=last.gate_id,
            device_id=last.device_id,
            subject_id=last.subject_id,
            details=details,
        )

    def close(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        until_ms: int,
        created_at: int | None,
    ) -> None:
        """FEVER_RECHECK_MISSED for every open recheck whose deadline is before ``until_ms``."""
        fever = self._by_cid.get(cid)
        if fever is None:
            return
        for r in fever.announce_due(until_ms - 1):
            self._alert(
                alerts,
                alerter,
                rules,
                cid,
                FeverOutcome(A.FEVER_RECHECK, r, None),
                r.event_time if created_at is None else created_at,
                False,
            )
        for r in fever.close_due(until_ms - 1):
            alerter.emit(
                alerts,
                alert_type=A.FEVER_RECHECK_MISSED,
                severity=A.WARNING,
                community_id=cid,
                cause=measurement(r),
                sources=[r.event_id],
                event_time=r.deadline,
                created_at=r.deadline if created_at is None else created_at,
                gate_id=r.gate_id,
                device_id=r.device_id,
                subject_id=r.subject_id,
                details={
                    "temperature_c": fmt_c(r.temperature_c),
                    "recheck_min": f"{rules.recheck_window_s / 60:g}",
                    "deadline": str(r.deadline),
                },
            )

    def expire(self, cid: str, before_ms: int) -> int:
        fever = self._by_cid.get(cid)
        return 0 if fever is None else fever.expire(before_ms)

    def sizes(self) -> tuple[int, int]:
        return (
            sum(len(f) for f in self._by_cid.values()),
            sum(f.open_count() for f in self._by_cid.values()),
        )
