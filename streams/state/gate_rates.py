"""Refusals per gate per event-time minute (GATE_ANOMALY): a gate refusing far more than its
own trailing baseline — a broken reader, or a crowd at the gate.

Store ``gate_rates`` (key ``community|gate``; value ``{"b": [[minute, refusals], ...],
"s": the first minute not yet decided, "on": the open episode's first minute or absent}``).

* ``observe``: a refusal (``early_warning.is_refusal``) counts in its minute — a late one too,
  but minutes already decided are not decided again.
* ``close(until)``: every minute that ended by ``until`` (sealed time), in order: with ``R`` the
  refusals in the window ending there and ``B`` those in the baseline before the window,
  anomalous when ``R ≥ anomaly_threshold(B)``. The first anomalous minute of an episode raises
  the alert (id from the gate and that minute); the episode ends at the first minute that is not
  anomalous (no alert). Minutes older than window + baseline are forgotten and a gate with
  nothing left is dropped, so memory is bounded — by the wall clock too (the engine's ``tick``
  closes a silent community).
"""

from __future__ import annotations

from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.early_warning import (
    MINUTE_MS,
    anomaly_threshold,
    gate_anomaly_enabled,
    gate_details,
    minutes,
)
from streams.state.alerter import Alerter
from streams.state.store import KeyedStore


class GateRates:
    __slots__ = ("_by_cid", "store")

    def __init__(self) -> None:
        self.store: KeyedStore[dict[str, Any]] = KeyedStore("gate_rates")
        self._by_cid: dict[str, set[str]] = {}  # an index of the store's keys

    def restored(self, key: str) -> None:
        cid = key.partition("|")[0]
        if key in self.store:
            self._by_cid.setdefault(cid, set()).add(key)
        elif cid in self._by_cid:
            self._by_cid[cid].discard(key)

    def communities(self) -> list[str]:
        return [cid for cid, keys in self._by_cid.items() if keys]

    def observe(self, rules: CommunityRules, cid: str, gate_id: str, t: int, late: bool) -> None:
        if not gate_anomaly_enabled(rules):
            return
        key = cid + "|" + gate_id
        minute = t - t % MINUTE_MS
        value = self.store.get(key)
        if value is None:
            self.store[key] = {"b": [[minute, 1]], "s": minute}
            self._by_cid.setdefault(cid, set()).add(key)
            return
        self.store.touch(key)
        if not late and minute < value["s"]:
            value["s"] = minute  # an earlier refusal arrived after a later one
        buckets = value["b"]
        for entry in reversed(buckets):
            if entry[0] == minute:
                entry[1] += 1
                return
        buckets.append([minute, 1])
        buckets.sort()

    def close(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        until_ms: int,
        created_at: int | None,
    ) -> None:
        keys = self._by_cid.get(cid)
        if not keys:
            return
        last = until_ms - until_ms % MINUTE_MS - MINUTE_MS  # the last minute that ended
        window = minutes(rules.gate_anomaly_window_s) * MINUTE_MS
        span = window + minutes(rules.gate_anomaly_baseline_s) * MINUTE_MS
        for key in sorted(keys):
            value = self.store.get(key)
            if value is None:
                keys.discard(key)
                continue
            start = value["s"]
            if start > last:
                continue
            self.store.touch(key)
            counts = dict((m, n) for m, n in value["b"])
            minute = start
            while minute <= last:
                if value.get("on") is None and not any(
                    minute - window < m <= minute for m in counts
                ):
                    # nothing refused in the window: jump to the next refusal
                    later = [m for m in counts if m > minute]
                    if not later:
                        minute = last + MINUTE_MS
                        break
                    minute = max(minute + MINUTE_MS, min(later))
                    continue
                self._decide(
                    alerts, alerter, rules, cid, key, value, counts, minute, window, created_at
                )
                minute += MINUTE_MS
            value["s"] = max(start, last + MINUTE_MS)
            horizon = value["s"] - span
            value["b"] = [[m, n] for m, n in value["b"] if m >= horizon]
            if not value["b"] and value.get("on") is None:
                del self.store[key]
                keys.discard(key)

    def _decide(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        key: str,
        value: dict[str, Any],
        counts: dict[int, int],
        minute: int,
        window: int,
        created_at: int | None,
    ) -> None:
        end = minute + MINUTE_MS
        base_from = end - window - minutes(rules.gate_anomaly_baseline_s) * MINUTE_MS
        recent = sum(n for m, n in counts.items() if end - window <= m < end)
        baseline = sum(n for m, n in counts.items() if base_from <= m < end - window)
        threshold = anomaly_threshold(baseline, rules)
        if recent < threshold:
            value.pop("on", None)
            return
        if value.get("on") is not None:
            return
        value["on"] = minute
        gate_id = key.partition("|")[2]
        alerter.emit(
            alerts,
            alert_type=A.GATE_ANOMALY,
            severity=A.WARNING,
            community_id=cid,
            cause=f"{key}|anomaly|{end}",
            sources=[],
            event_time=end,
            created_at=end if created_at is None else created_at,
            gate_id=gate_id,
            details=gate_details(recent, baseline, threshold, rules),
        )

    def expire(self, horizons: dict[str, int], rules_for: Any) -> int:
        """Forget minutes before each community's horizon − window − baseline (the close does
        this as it goes; this is for communities with nothing to close)."""
        dropped = 0
        for key, value in self.store.items():
            cid = key.partition("|")[0]
            until = horizons.get(cid)
            if until is None:
                continue
            rules = rules_for(cid)
            span = (
                minutes(rules.gate_anomaly_window_s) + minutes(rules.gate_anomaly_baseline_s)
            ) * MINUTE_MS
            keep = [[m, n] for m, n in value["b"] if m >= until - span]
            if len(keep) == len(value["b"]):
                continue
            dropped += len(value["b"]) - len(keep)
            if keep or value.get("on") is not None:
                value["b"] = keep
                self.store.touch(key)
            else:
                del self.store[key]
                self._by_cid.get(cid, set()).discard(key)
        return dropped

    def __len__(self) -> int:
        return len(self.store)
