"""Entry-count enforcement (出入次数管理): ``ExitQuota`` and the pass de-duplication it relies on.

Where a community limits passes per person or per household, passes in the limited direction(s)
are counted in an event-time sliding window of ``entry_limit_window_s``: exits for OUT, entries
for IN, both for ANY. The exit that would exceed ``entry_limit_count`` gets
``entry_limit_action``; returning home is never refused by the count (issue 20, behaviour 4): an
entry over an IN limit is let through with a warning and the alert (the guideline's 提示), an
entry over an ANY limit is let through silently (it is counted; the next exit is the pass the
count stops). Repeated scans of the same subject at the same gate and direction, each within
``dedupe_window_s`` of the previous one, are one pass (``PassDeduper``): the re-scans of a
counted pass are let through and not counted again, the re-scans of a refused one are refused
again. Only passes that were let through are recorded: a denied pass does not use the quota.

The household counted is the register's: a scan's own ``household_id`` decides nothing, and
raises HOUSEHOLD_MISMATCH when it disagrees (``check_household``; issue 20, behaviour 3).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping

from streams.rules.alerts import ENTRY_LIMIT_EXCEEDED, HOUSEHOLD_MISMATCH, INFO, WARNING, mask
from streams.rules.config import CommunityRules
from streams.rules.gate_access import ACTION_RANK, ALLOW, WARN, Finding
from streams.state.store import KeyedStore


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


def check_entry_limit(
    passes_in_window: int, rules: CommunityRules, scope: str, direction: str = "OUT"
) -> Finding | None:
    """ENTRY_LIMIT_EXCEEDED when this pass would be one more than the limit allows. An entry
    (``direction`` IN) is never refused by the count: over an ANY limit it is no finding (the
    next exit is stopped), over an IN limit it is let through with a warning at most."""
    if passes_in_window < rules.entry_limit_count:
        return None
    action = rules.entry_limit_action
    if direction == "IN":
        if rules.entry_limit_direction == "ANY":
            return None
        if ACTION_RANK[action] > ACTION_RANK[WARN]:
            action = WARN
    return Finding(
        action,
        ENTRY_LIMIT_EXCEEDED,
        WARNING,
        {
            "scope": scope,
            "count": str(passes_in_window),
            "limit": str(rules.entry_limit_count),
            "window_h": f"{rules.entry_limit_window_s / 3600:g}",
            "direction": rules.entry_limit_direction,
            "action": action,
        },
    )


def check_household(
    on_scan: str | None, registered: str | None, rules: CommunityRules
) -> Finding | None:
    """HOUSEHOLD_MISMATCH when a scan names a household the register does not give the resident
    (a stale code, or a forged one). It changes no decision — the register's household is the
    one counted — so its action is ALLOW; WARNING where the community counts households (the
    scan would have dodged the quota), INFO elsewhere (a code to reissue)."""
    if not on_scan or on_scan == registered:
        return None
    return Finding(
        ALLOW,
        HOUSEHOLD_MISMATCH,
        WARNING if rules.entry_limit_scope == "HOUSEHOLD" else INFO,
        {
            "scan_household": mask(on_scan),
            "registered_household": mask(registered),
            "scope": rules.entry_limit_scope,
        },
    )


def _key(parts: tuple[str, ...]) -> str:
    return "|".join(parts)


class ExitQuota:
    """Pass times per (community, scope, id), sorted, for sliding-window counts.

    Counts look both ways in event time: a pass recorded *after* ``t`` (it arrived first, out of
    order) and within the window counts against the pass at ``t`` too, so two exits of a
    one-per-48-h household are never both allowed, whichever arrives first (issue 9, defect 4).
    Data in a ``KeyedStore`` (key ``community|scope|id``, value the sorted pass times).
    """

    __slots__ = ("store",)

    def __init__(self, store: KeyedStore[list[int]] | None = None) -> None:
        self.store: KeyedStore[list[int]] = KeyedStore("quota") if store is None else store

    def count(self, key: tuple[str, str, str], t: int, window_ms: int) -> int:
        """Passes recorded within the window around ``t``: (t - window, t + window)."""
        times = self.store.get(_key(key))
        if not times:
            return 0
        return bisect_left(times, t + window_ms) - bisect_right(times, t - window_ms)

    def record(self, key: tuple[str, str, str], t: int) -> None:
        k = _key(key)
        store = self.store
        times = store.get(k)
        if times is None:
            store[k] = [t]
            return
        if t >= times[-1]:
            times.append(t)
        else:
            insort(times, t)
        store.touch(k)

    def expire(self, horizon_ms: Mapping[str, int], keep_ms: Mapping[str, int]) -> int:
        """Drop passes older than the community's horizon minus its window."""
        dropped = 0
        store = self.store
        for k, times in store.items():
            cid = k.partition("|")[0]
            cutoff = horizon_ms.get(cid, 0) - keep_ms.get(cid, 0)
            i = bisect_right(times, cutoff)
            if i:
                dropped += i
                if i == len(times):
                    del store[k]
                else:
                    del times[:i]
                    store.touch(k)
        return dropped

    def __len__(self) -> int:
        return len(self.store)


class PassDeduper:
    """Counted passes per (community, subject, gate, direction): a scan within the dedupe window
    of one of them (before or after it in event time) is the same pass, not a new one. The
    times are those of the counted scan and of its re-scans that were let through
    (``GateAccess.record``), so a person re-scanning every 20 s stays one pass however long
    the gate keeps them (issue 20, behaviour 5).
    Data in a ``KeyedStore`` (key ``community|subject|gate|direction``, value sorted times)."""

    __slots__ = ("store",)

    def __init__(self, store: KeyedStore[list[int]] | None = None) -> None:
        self.store: KeyedStore[list[int]] = KeyedStore("dedupe") if store is None else store

    def is_repeat(self, key: tuple[str, str, str, str], t: int, window_ms: int) -> bool:
        times = self.store.get(_key(key))
        if not times:
            return False
        i = bisect_left(times, t - window_ms)
        return i < len(times) and times[i] <= t + window_ms

    def record(self, key: tuple[str, str, str, str], t: int) -> None:
        k = _key(key)
        store = self.store
        times = store.get(k)
        if times is None:
            store[k] = [t]
            return
        if t >= times[-1]:
            times.append(t)
        else:
            insort(times, t)
        store.touch(k)

    def expire(self, horizon_ms: Mapping[str, int]) -> int:
        dropped = 0
        store = self.store
        for k, times in store.items():
            horizon = horizon_ms.get(k.partition("|")[0], 0)
            if times[-1] < horizon:
                dropped += 1
                del store[k]
            elif times[0] < horizon:
                del times[: bisect_left(times, horizon)]
                store.touch(k)
        return dropped

    def __len__(self) -> int:
        return len(self.store)
