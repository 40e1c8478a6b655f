"""What the dispatcher keeps of an alert once it is closed (acknowledged, resolved, silenced):
its id, how and when it closed — no state, no timers. Enough to skip a late duplicate of the
alert (the ``alerts`` consumer re-reads the batch it had not committed when a rebalance or a
crash came) and to settle, after a restart, a group member whose leader closed. Bounded twice:
an entry leaves ``ttl_ms`` after the alert closed, and the oldest leave first beyond
``max_entries``.

Why a few hours are plenty: the ``alerts`` offsets are committed as soon as an alert's ROUTED
is in the broker, so a duplicate can only be an alert of the last uncommitted batch (seconds
before a rebalance or a crash); a restarted dispatcher rebuilds the whole set from its
``alert.actions`` partitions. A duplicate arriving after an entry expired would be taken on
and paged again — the price of a bound, and far outside the window in which duplicates occur.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

#: how long the id of a closed alert is kept (from its closing)
CLOSED_TTL_MS: Final = 6 * 3600 * 1000
#: at most this many ids (the oldest go first)
CLOSED_MAX: Final = 50_000


@dataclass(frozen=True)
class Closed:
    status: str  # ACKNOWLEDGED, RESOLVED or SILENCED
    closed_by: str  # comma-separated staff ids ("" for the dispatcher's own)
    closed_at: int  # ms


class ClosedAlerts:
    """Ids of closed alerts, in the order they were added; see the module docstring."""

    def __init__(self, ttl_ms: int = CLOSED_TTL_MS, max_entries: int = CLOSED_MAX) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Closed] = OrderedDict()
        self.peak = 0

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, alert_id: str) -> Closed | None:
        return self._entries.get(alert_id)

    def count(self, status: str) -> int:
        """How many of the ids kept closed with ``status``."""
        return sum(1 for entry in self._entries.values() if entry.status == status)

    def add(self, alert_id: str, status: str, closed_by: str, closed_at: int) -> None:
        if alert_id in self._entries:
            return
        self._entries[alert_id] = Closed(status, closed_by, closed_at)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        self.peak = max(self.peak, len(self._entries))

    def expire(self, now_ms: int) -> int:
        """Drop the entries older than the TTL; returns how many went. Entries are added
        roughly in closing order, so the scan stops at the first one still young (one closed
        out of order stays at most until the entries before it have gone)."""
        gone = 0
        horizon = now_ms - self.ttl_ms
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.closed_at >= horizon:
                break
            self._entries.popitem(last=False)
            gone += 1
        return gone
