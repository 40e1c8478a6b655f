"""Suspected clusters (CLUSTER_SUSPECTED): the cases of each building / household / community
over a sliding event-time window.

Store ``clusters`` (key ``community|scope|key``; value ``{"c": cases decided, "p": cases
pending, "e": the open episode or absent}``, a case ``[t, event_id, person, kind]``).

* ``observe``: a case (a confirmed fever, a self-reported fever or symptoms). It waits in ``p``
  until the community's sealed time (event time − allowed lateness) passes it; a case that is
  already behind the sealed time (late) is decided at once.
* ``close(until)``: the pending cases up to ``until`` in (time, event id) order. A case whose
  window ``(t − W, t]`` holds ``cluster_min_cases`` different persons opens an *episode*: one
  alert, its id from the scope and the episode's first case. A later case within ``W`` of the
  episode's latest case joins it; a new person re-emits the same alert (same id and event time,
  one more case: "updated, not repeated"); a case more than ``W`` after the latest one starts
  afresh.
* ``expire(until)``: cases older than ``until − W`` are forgotten, so memory is bounded by the
  window — also for a community gone silent, which the engine's ``tick`` closes and expires on
  the wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.early_warning import cluster_details, cluster_enabled
from streams.rules.timeutil import MS_PER_SECOND
from streams.state.alerter import Alerter
from streams.state.store import KeyedStore

Case = list[Any]  # [t, event_id, person, kind]


class Clusters:
    __slots__ = ("_pending", "store")

    def __init__(self) -> None:
        self.store: KeyedStore[dict[str, Any]] = KeyedStore("clusters")
        # community -> keys with pending cases (an index of the store, rebuilt on restore)
        self._pending: dict[str, set[str]] = {}

    def restored(self, key: str) -> None:
        value = self.store.get(key)
        cid = key.partition("|")[0]
        if value is not None and value.get("p"):
            self._pending.setdefault(cid, set()).add(key)
        elif cid in self._pending:
            self._pending[cid].discard(key)

    def communities(self) -> set[str]:
        return {k.partition("|")[0] for k in self.store}

    def observe(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        scope: tuple[str, str],
        t: int,
        event_id: str,
        person: str,
        kind: str,
        late: bool,
        created_at: int,
    ) -> None:
        if not cluster_enabled(rules):
            return
        key = f"{cid}|{scope[0]}|{scope[1]}"
        value = self.store.get(key)
        if value is None:
            value = {"c": [], "p": []}
            self.store[key] = value
        else:
            self.store.touch(key)
        case: Case = [t, event_id, person, kind]
        if case in value["c"] or case in value["p"]:
            return  # the same measurement or report again
        if late:
            self._decide(alerts, alerter, rules, cid, key, value, case, created_at)
        else:
            value["p"].append(case)
            self._pending.setdefault(cid, set()).add(key)

    def close(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        until_ms: int,
        created_at: int | None,
    ) -> None:
        """Decide the pending cases before ``until_ms`` (the sealed time: an event before it is
        late, ``EventClock.observe``)."""
        keys = self._pending.get(cid)
        if keys:
            for key in sorted(keys):
                value = self.store.get(key)
                if value is None:
                    keys.discard(key)
                    continue
                due = sorted(c for c in value["p"] if c[0] < until_ms)
                if not due:
                    continue
                value["p"] = [c for c in value["p"] if c[0] >= until_ms]
                self.store.touch(key)
                for case in due:
                    self._decide(
                        alerts,
                        alerter,
                        rules,
                        cid,
                        key,
                        value,
                        case,
                        case[0] if created_at is None else created_at,
                    )
                if not value["p"]:
                    keys.discard(key)

    def _decide(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        key: str,
        value: dict[str, Any],
        case: Case,
        created_at: int,
    ) -> None:
        t, event_id, person = case[0], case[1], case[2]
        window_ms = rules.cluster_window_s * MS_PER_SECOND
        cases = value["c"]
        cases.append(case)
        cases.sort()
        episode = value.get("e")
        if episode is not None and t - episode["last"] <= window_ms:
            episode["last"] = max(episode["last"], t)
            if person in episode["p"]:
                return
            episode["p"].append(person)
            episode["k"].append(case[3])
            episode["s"].append(event_id)
        else:
            inside = [c for c in cases if t - window_ms < c[0] <= t]
            persons: list[str] = []
            kinds: list[str] = []
            sources: list[str] = []
            for c in inside:
                if c[2] not in persons:
                    persons.append(c[2])
                    kinds.append(c[3])
                    sources.append(c[1])
            if len(persons) < rules.cluster_min_cases:
                value.pop("e", None)
                return
            first = inside[0]
            episode = value["e"] = {
                "t0": first[0],
                "cause": f"{key}|{first[0]}|{first[1]}",
                "last": t,
                "p": persons,
                "k": kinds,
                "s": sources,
            }
        scope, _, scope_key = key.partition("|")[2].partition("|")
        alerter.emit(
            alerts,
            alert_type=A.CLUSTER_SUSPECTED,
            severity=A.CRITICAL,
            community_id=cid,
            cause=episode["cause"],
            sources=list(episode["s"]),
            event_time=episode["t0"],  # every version in the sink's same partition and row
            created_at=created_at,
            details=cluster_details(rules, scope, scope_key, episode["p"], episode["k"]),
        )

    def expire(self, horizons: Mapping[str, int]) -> int:
        """Forget the cases at or before their community's horizon (its sealed time − the
        window) and the episodes no case can join any more; returns how many cases went (the
        engine's sweep on event time, and its tick on the wall clock for a silent community)."""
        dropped = 0
        for key, value in self.store.items():
            horizon = horizons.get(key.partition("|")[0])
            if horizon is None:
                continue
            keep = [c for c in value["c"] if c[0] > horizon]
            episode = value.get("e")
            if len(keep) == len(value["c"]) and (episode is None or episode["last"] > horizon):
                continue
            dropped += len(value["c"]) - len(keep)
            value["c"] = keep
            if episode is not None and episode["last"] <= horizon:
                del value["e"]
            if keep or value["p"] or "e" in value:
                self.store.touch(key)
            else:
                del self.store[key]
        return dropped

    @staticmethod
    def horizon(until_ms: int, rules: CommunityRules) -> int:
        return until_ms - rules.cluster_window_s * MS_PER_SECOND

    def __len__(self) -> int:
        return len(self.store)
