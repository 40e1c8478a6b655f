"""The dispatcher's Prometheus counting, fed by the I/O layer (``stage.py``): every
``alert.actions`` record it produces goes through ``DispatchMeter.count``, and ``hold`` sets
the gauges from the state it holds. Nothing here reads a clock or talks to a service; the
pure ``record_counts`` and ``open_alerts`` say what is counted, and are tested as tables.

What counts, per record the dispatcher writes (not per record replayed on a restore):
- NOTIFIED / DELIVERY_FAILED: one message delivered / failed on its channel kind (a failure
  with a retry to come is still a failed message); a failure also counts in
  ``fangxian_dispatch_failures`` by target and reason (the ``FangxianDispatchFailing`` rule);
- ESCALATED: one escalation, by the level escalated to;
- ACKNOWLEDGED by a person (``via`` link or console): one acknowledgement — the members of a
  group closed with their leader (``via_leader``) are not counted again;
- SILENCED: one muted alert, by what muted it (``muted_by``: silence, inhibition, policy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fangxian.core.metrics import Metrics
from schemas.contract import SEVERITIES
from streams.dispatch.machine import OPEN, AlertState

DELIVERED, FAILED = "delivered", "failed"


@dataclass(frozen=True)
class Count:
    """One increment: ``metric`` is a ``Metrics`` field, ``labels`` its label values."""

    metric: str
    labels: tuple[tuple[str, str], ...]


def record_counts(
    record: Mapping[str, Any], kind_of: Callable[[str], str], target_of: Callable[[str], str]
) -> list[Count]:
    """The increments one produced ``alert.actions`` record makes. ``kind_of`` maps a
    delivery's channel target to its channel kind (wecom, dingtalk, feishu, webhook, sms,
    ``unrouted``); ``target_of`` to a bounded label (``sms:<staff_id>`` → ``sms``)."""
    action = record["action"]
    detail = record.get("detail") or {}
    target = record.get("channel") or ""
    if action in ("NOTIFIED", "DELIVERY_FAILED"):
        outcome = DELIVERED if action == "NOTIFIED" else FAILED
        out = [Count("dispatch_messages", (("channel", kind_of(target)), ("outcome", outcome)))]
        if action == "DELIVERY_FAILED":
            reason = detail.get("code") or "error"
            out.append(
                Count("dispatch_failures", (("channel", target_of(target)), ("reason", reason)))
            )
        return out
    if action == "ESCALATED":
        return [Count("dispatch_escalations", (("level", str(record.get("level", 0))),))]
    if action == "ACKNOWLEDGED" and "via" in detail:
        return [Count("dispatch_acknowledgements", (("via", detail["via"]),))]
    if action == "SILENCED":
        return [Count("dispatch_muted", (("by", detail.get("muted_by") or "silence"),))]
    return []


def open_alerts(alerts: Iterable[AlertState], now_ms: int) -> dict[str, tuple[int, float]]:
    """Per severity (every one of the contract's): (open alerts, age in seconds of the oldest
    since it was created; 0.0 when none is open)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    oldest: dict[str, int] = {}
    for state in alerts:
        if state.status != OPEN:
            continue
        counts[state.severity] = counts.get(state.severity, 0) + 1
        born = state.created_at or state.event_time
        oldest[state.severity] = min(oldest.get(state.severity, born), born)
    return {
        sev: (n, max(0.0, (now_ms - oldest[sev]) / 1000) if sev in oldest else 0.0)
        for sev, n in counts.items()
    }


def first_message_latencies(
    leader: AlertState, alerts: Mapping[str, AlertState], sent_ms: int
) -> list[float]:
    """Seconds from created_at to ``sent_ms`` for the leader and each member of its group,
    when this delivery is the group's first delivered message (none otherwise)."""
    if "NOTIFIED" in leader.outcomes.values():
        return []
    group = [leader, *(alerts[m] for m in leader.members if m in alerts)]
    return [max(0.0, (sent_ms - (a.created_at or a.event_time)) / 1000) for a in group]


class DispatchMeter:
    """Applies the counts to a ``Metrics`` object."""

    def __init__(
        self, metrics: Metrics, kind_of: Callable[[str], str], target_of: Callable[[str], str]
    ) -> None:
        self.metrics = metrics
        self._kind_of = kind_of
        self._target_of = target_of

    def count(self, record: Mapping[str, Any]) -> None:
        for c in record_counts(record, self._kind_of, self._target_of):
            getattr(self.metrics, c.metric).labels(**dict(c.labels)).inc()

    def first_message(self, latencies: Iterable[float]) -> None:
        for seconds in latencies:
            self.metrics.dispatch_first_message_seconds.observe(seconds)

    def hold(self, alerts: Iterable[AlertState], now_ms: int, breakers: Mapping[str, bool]) -> None:
        for severity, (n, age_s) in open_alerts(alerts, now_ms).items():
            self.metrics.dispatch_open_alerts.labels(severity=severity).set(n)
            self.metrics.dispatch_oldest_open_seconds.labels(severity=severity).set(age_s)
        for target, is_open in breakers.items():
            self.metrics.dispatch_breaker_open.labels(target=target).set(1 if is_open else 0)
