"""The engine's one handle on the early-warning state objects (issue 20): suspected clusters,
occupancy and gate refusal rates. Each is its own state object with its own store
(``clusters.py``, ``occupancy.py``, ``gate_rates.py``); this only fans the engine's few calls
out to them, so the engine's edits stay small. Rules: ``streams/rules/early_warning.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.rules.config import CommunityRules
from streams.rules.early_warning import (
    CASE_FEVER_CONFIRMED,
    cluster_scope,
    is_refusal,
    occupancy_delta,
    report_case,
)
from streams.state.alerter import Alerter
from streams.state.clusters import Clusters
from streams.state.gate_rates import GateRates
from streams.state.occupancy import Occupancy
from streams.state.store import KeyedStore

Record = Mapping[str, Any]


class EarlyWarning:
    __slots__ = ("clusters", "gate_rates", "occupancy")

    def __init__(self) -> None:
        self.clusters = Clusters()
        self.occupancy = Occupancy()
        self.gate_rates = GateRates()

    def stores(self) -> list[KeyedStore[Any]]:
        return [self.clusters.store, self.occupancy.store, self.gate_rates.store]

    def restore_hooks(self) -> dict[str, Callable[[str], None]]:
        return {
            self.clusters.store.name: self.clusters.restored,
            self.gate_rates.store.name: self.gate_rates.restored,
        }

    def communities(self) -> set[str]:
        return (
            self.clusters.communities()
            | set(self.occupancy.communities())
            | set(self.gate_rates.communities())
        )

    # -- events in
    def scan(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        scan: Record,
        t: int,
        late: bool,
        action: str,
        reasons: Iterable[str],
        repeat: bool,
        created_at: int,
    ) -> None:
        """A decided gate scan: occupancy and the gate's refusals."""
        cid = scan["community_id"]
        delta = occupancy_delta(scan["subject_type"], scan["direction"], action, repeat)
        if delta:
            self.occupancy.observe(alerts, alerter, rules, cid, t, delta, late, created_at)
        if is_refusal(action, reasons):
            self.gate_rates.observe(rules, cid, scan["gate_id"], t, late)

    def report(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        report: Record,
        resident: Record | None,
        t: int,
        late: bool,
        created_at: int,
    ) -> None:
        """A health report: a case when it reports a fever or symptoms."""
        kind = report_case(report, rules)
        if kind is not None:
            self._case(
                alerts,
                alerter,
                rules,
                report["community_id"],
                resident,
                t,
                report["event_id"],
                report["resident_id"],
                kind,
                late,
                created_at,
            )

    def fever_alerts(
        self,
        alerts: list[dict[str, Any]],
        new: Iterable[Record],
        alerter: Alerter,
        rules: CommunityRules,
        residents: Mapping[str, Record],
        created_at: int,
    ) -> None:
        """The fever flow's new alerts: a FEVER_CONFIRMED of a known subject is a case (at its
        recheck's time; a device-keyed fever has nobody to count)."""
        for alert in new:
            subject = alert.get("subject_id")
            if alert["alert_type"] != CASE_FEVER_CONFIRMED or not subject:
                continue
            self._case(
                alerts,
                alerter,
                rules,
                alert["community_id"],
                residents.get(subject),
                alert["event_time"],
                alert["alert_id"],
                subject,
                CASE_FEVER_CONFIRMED,
                alert["details"].get("late") == "true",
                created_at,
            )

    def _case(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        resident: Record | None,
        t: int,
        event_id: str,
        person: str,
        kind: str,
        late: bool,
        created_at: int,
    ) -> None:
        scope = cluster_scope(rules, cid, resident)
        if scope is not None:
            self.clusters.observe(
                alerts, alerter, rules, cid, scope, t, event_id, person, kind, late, created_at
            )

    # -- event-time progress
    def close(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        until_ms: int,
        created_at: int | None,
    ) -> None:
        """Decide what the community's sealed time ``until_ms`` has passed."""
        self.clusters.close(alerts, alerter, rules, cid, until_ms, created_at)
        self.occupancy.close(alerts, alerter, rules, cid, until_ms, created_at)
        self.gate_rates.close(alerts, alerter, rules, cid, until_ms, created_at)

    def expire(self, sealed: Mapping[str, int], rules_for: Callable[[str], CommunityRules]) -> int:
        """Forget what each community's window has left behind its sealed time."""
        dropped = self.clusters.expire(
            {cid: Clusters.horizon(until, rules_for(cid)) for cid, until in sealed.items()}
        )
        return dropped + self.gate_rates.expire(dict(sealed), rules_for)

    def sizes(self) -> dict[str, int]:
        return {
            "cluster_keys": len(self.clusters),
            "occupancy_sites": len(self.occupancy),
            "gate_rate_keys": len(self.gate_rates),
        }
