"""Entry-count enforcement (出入次数管理): ``ExitQuota`` and the pass de-duplication it relies on.

Where a community limits passes per person or per household, passes in the limited direction(s)
are counted in an event-time sliding window of ``entry_limit_window_s``; the pass that would exceed
``entry_limit_count`` gets ``entry_limit_action``. Repeated scans of the same subject at the same
gate and direction within ``dedupe_window_s`` are one pass (``PassDeduper``). Only passes that were
let through are recorded: a denied pass does not use the quota.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping

from streams.rules.alerts import ENTRY_LIMIT_EXCEEDED, WARNING
from streams.rules.config import CommunityRules
from streams.rules.gate_access import Finding


def direction_limited(direction: str, limit_direction: str) -> bool:
    """Whether passes in ``direction`` count against a limit on ``limit_direction``."""
    return limit_direction == "ANY" or direction == limit_direction


def limit_key(
    rules: CommunityRules, subject_id: str, household_id: str | None
) -> tuple[str, str] | None:
    """(scope, id) whose passes are counted, or None when the community sets no limit. A
    household limit falls back to the person when the household is unknown."""
    scope = rules.entry_limit_scope
    if scope == "NONE":
        return None
    if scope == "HOUSEHOLD" and household_id:
        return ("HOUSEHOLD", household_id)
    return ("PERSON", subject_id)


def check_entry_limit(passes_in_window: int, rules: CommunityRules, scope: str) -> Finding | None:
    """ENTRY_LIMIT_EXCEEDED when this pass would be one more than the limit allows."""
    if passes_in_window < rules.entry_limit_count:
        return None
    return Finding(
        rules.entry_limit_action,
        ENTRY_LIMIT_EXCEEDED,
        WARNING,
        {
            "scope": scope,
            "count": str(passes_in_window),
            "limit": str(rules.entry_limit_count),
            "window_h": f"{rules.entry_limit_window_s / 3600:g}",
            "direction": rules.entry_limit_direction,
            "action": rules.entry_limit_action,
        },
    )


class ExitQuota:
    """Pass times per (community, scope, id), sorted, for sliding-window counts."""

    __slots__ = ("_passes",)

    def __init__(self) -> None:
        self._passes: dict[tuple[str, str, str], list[int]] = {}

    def count(self, key: tuple[str, str, str], t: int, window_ms: int) -> int:
        """Passes recorded in the window (t - window, t]."""
        times = self._passes.get(key)
        if not times:
            return 0
        return bisect_right(times, t) - bisect_right(times, t - window_ms)

    def record(self, key: tuple[str, str, str], t: int) -> None:
        times = self._passes.get(key)
        if times is None:
            self._passes[key] = [t]
        elif t >= times[-1]:
            times.append(t)
        else:
            insort(times, t)

    def expire(self, horizon_ms: Mapping[str, int], keep_ms: Mapping[str, int]) -> int:
        """Drop passes older than the community's horizon minus its window."""
        dropped = 0
        for key in list(self._passes):
            cutoff = horizon_ms.get(key[0], 0) - keep_ms.get(key[0], 0)
            times = self._passes[key]
            i = bisect_right(times, cutoff)
            if i:
                dropped += i
                if i == len(times):
                    del self._passes[key]
                else:
                    del times[:i]
        return dropped

    def __len__(self) -> int:
        return len(self._passes)


class PassDeduper:
    """Last counted pass per (community, subject, gate, direction): a scan within the dedupe
    window after it is the same pass, not a new one."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str, str], int] = {}

    def is_repeat(self, key: tuple[str, str, str, str], t: int, window_ms: int) -> bool:
        last = self._last.get(key)
        return last is not None and abs(t - last) <= window_ms

    def record(self, key: tuple[str, str, str, str], t: int) -> None:
        last = self._last.get(key)
        if last is None or t > last:
            self._last[key] = t

    def expire(self, horizon_ms: Mapping[str, int]) -> int:
        stale = [k for k, t in self._last.items() if t < horizon_ms.get(k[0], 0)]
        for k in stale:
            del self._last[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self._last)
