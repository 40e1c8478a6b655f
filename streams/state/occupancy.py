"""Persons inside a site (OCCUPANCY_OVER_CAPACITY): IN − OUT in event time, carried across
midnight.

Store ``occupancy`` (key ``community``; value ``{"n": persons inside at the sealed time,
"d": [[minute, net passes], ...] pending minutes, "o": the open episode or absent}``). A site is
a community's record (a market or a workplace has its own ``CommunityRules`` with
``capacity_persons``).

* ``observe``: a decided pass of a person (``early_warning.occupancy_delta``) adds to its
  event-time minute; a pass behind the sealed time (late) goes straight into the count.
* ``close(until)``: the minutes that ended by ``until`` (sealed time: event time − allowed
  lateness) folded into the count in order, never below zero (people who were inside before
  counting began go out too). At the end of each minute: above ``capacity_persons`` opens an
  episode — one alert, its id from the minute; at or below it again re-emits that alert as
  CLEARED (same id and event time: the sink's row becomes the cleared one, the dispatcher
  resolves the open alert). Memory: one small value per site; the pending minutes are bounded by
  the lateness (and by the wall clock: the engine's ``tick`` closes a silent community).
"""

from __future__ import annotations

from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.early_warning import MINUTE_MS, occupancy_details, over_capacity
from streams.state.alerter import Alerter
from streams.state.store import KeyedStore


class Occupancy:
    __slots__ = ("store",)

    def __init__(self) -> None:
        self.store: KeyedStore[dict[str, Any]] = KeyedStore("occupancy")

    def communities(self) -> list[str]:
        return list(self.store)

    def inside(self, cid: str) -> int:
        """Persons inside at the sealed time (pending minutes not counted yet)."""
        value = self.store.get(cid)
        return 0 if value is None else int(value["n"])

    def observe(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        t: int,
        delta: int,
        late: bool,
        created_at: int,
    ) -> None:
        if delta == 0:
            return
        value = self.store.get(cid)
        if value is None:
            value = {"n": 0, "d": []}
            self.store[cid] = value
        else:
            self.store.touch(cid)
        if late:
            value["n"] = max(0, value["n"] + delta)
            self._check(alerts, alerter, rules, cid, value, t, created_at)
            return
        minute = t - t % MINUTE_MS
        pending = value["d"]
        for entry in pending:
            if entry[0] == minute:
                entry[1] += delta
                return
        pending.append([minute, delta])

    def close(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        until_ms: int,
        created_at: int | None,
    ) -> None:
        value = self.store.get(cid)
        if value is None:
            return
        pending = value["d"]
        due = sorted(e for e in pending if e[0] + MINUTE_MS <= until_ms)
        if not due:
            if value.get("o") is not None and not over_capacity(value["n"], rules):
                # the capacity was raised (or removed) while over it
                self.store.touch(cid)
                self._check(alerts, alerter, rules, cid, value, until_ms, created_at or until_ms)
            return
        value["d"] = [e for e in pending if e[0] + MINUTE_MS > until_ms]
        self.store.touch(cid)
        for minute, delta in due:
            value["n"] = max(0, value["n"] + delta)
            end = minute + MINUTE_MS
            self._check(
                alerts, alerter, rules, cid, value, end, end if created_at is None else created_at
            )
        if value["n"] == 0 and not value["d"] and value.get("o") is None:
            del self.store[cid]  # nobody inside: nothing to remember

    def _check(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        value: dict[str, Any],
        at: int,
        created_at: int,
    ) -> None:
        inside = value["n"]
        episode = value.get("o")
        over = over_capacity(inside, rules)
        if over and episode is None:
            episode = value["o"] = {"t0": at, "cause": f"{cid}|occupancy|{at}"}
            cleared = False
        elif not over and episode is not None:
            del value["o"]
            cleared = True
        else:
            return
        alerter.emit(
            alerts,
            alert_type=A.OCCUPANCY_OVER_CAPACITY,
            severity=A.WARNING,
            community_id=cid,
            cause=episode["cause"],
            sources=[],
            event_time=episode["t0"],
            created_at=created_at,
            details={**occupancy_details(inside, rules, cleared), "at": str(at)},
        )

    def __len__(self) -> int:
        return len(self.store)
