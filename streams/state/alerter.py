"""The alerter: builds alert records with deterministic ids, and suppresses repeats.

Two kinds of alert:

* *windowed* alerts (``suppress_key`` given: gate findings, implausible readings, drift, refused
  faces, symptoms and fevers reported, clock skew) are admitted once per suppression bucket of
  (type, community, key) — see ``AlertSuppressor``. Their id comes from the bucket, so the same
  events give the same ids in any arrival order.
* *episode* alerts (``suppress_key`` None: the fever recheck flow, silent devices, overdue
  reports, observation completed) are raised once by the state that owns the episode (a
  recheck's status, a device's silence flag, a day's "overdue alerted" mark); their id comes from
  the episode's cause (the readings, the device and its last event, the resident and the day).

State: store ``suppress`` (``AlertSuppressor``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.rules.alerts import AlertSuppressor, bucket_cause, build_alert
from streams.rules.temperature import tenths
from streams.state.store import KeyedStore


class Alerter:
    __slots__ = ("stats", "suppressor")

    def __init__(self, stats: dict[str, int]) -> None:
        self.suppressor = AlertSuppressor()
        self.stats = stats

    @property
    def store(self) -> KeyedStore[list[int]]:
        return self.suppressor.store

    def emit(
        self,
        alerts: list[dict[str, Any]],
        *,
        alert_type: str,
        severity: str,
        community_id: str,
        cause: str,
        sources: list[str],
        event_time: int,
        created_at: int,
        suppress_key: str | None = None,
        window_ms: int = 0,
        gate_id: str | None = None,
        device_id: str | None = None,
        subject_id: str | None = None,
        details: Mapping[str, str] | None = None,
    ) -> bool:
        """Append the alert to ``alerts`` unless suppressed; True if it was appended."""
        if suppress_key is not None and window_ms > 0:
            if not self.suppressor.admit(
                alert_type, community_id, suppress_key, event_time, window_ms
            ):
                self.stats["suppressed_alerts"] += 1
                return False
            cause = bucket_cause(
                community_id, suppress_key, AlertSuppressor.bucket(event_time, window_ms)
            )
        self.stats["alerts"] += 1
        alerts.append(
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
        return True

    def expire(self, horizon_ms: Mapping[str, int]) -> int:
        return self.suppressor.expire(horizon_ms)


def fmt_c(value: float) -> str:
    """A temperature for alert details and messages: 0.1 °C, rounded half up — the precision
    the rules compare at (``streams.rules.temperature.tenths``), so a message's numbers agree
    with its comparison words."""
    return f"{tenths(value) / 10:.1f}"
