"""The event clock: a community's time derived from the progress of its sources.

Each *source* (a device: a gate scanner, an infrared gate, a handheld gun) has a progress — the
highest event time seen from it. Events whose Kafka timestamp can be checked are *verified*:
an event stamped more than ``max_skew_ms`` after its Kafka timestamp is clamped to it by the
engine (and raises DEVICE_CLOCK_SKEW), so a verified progress is never far in the future. The
community's time is the highest verified progress; events without a usable Kafka timestamp
(−1, 0) move it at most ``max_skew_ms`` beyond that (or freely if nothing was verifiable at
all: a test driving the engine directly). It never goes back.

Why not a median of the sources: it is not a function of the events alone — a source joining
or falling idle moves it, so the time (and the windows it closes) depended on how events were
cut into polls (the property test found alert sets differing with the poll size), and one
stalled device held its community back. The highest verified progress only grows with the
events seen, so after the same events it is the same whatever their order and batching (issue
9, defect 8), and one bad clock cannot move it beyond the allowed skew (defect 2).

The time is recomputed once per batch (``advance``), after the batch's events are recorded, so
everything in one batch is judged against the same time (defect 1).

An event is *late* when it is more than the allowed lateness behind the community's time. Late
events still get all their outputs and still count (exits, entries); only the windows that
close on event time (fever rechecks, drift) treat them as too old.

State: store ``clock``, key = community id, value = ``[time, {source: verified progress},
{source: unverified progress}]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from streams.state.store import KeyedStore


class CommunityTime:
    """Progress per source and the derived community time of one community."""

    __slots__ = ("sources", "time", "unverified")

    def __init__(
        self,
        time: int | None = None,
        sources: dict[str, int] | None = None,
        unverified: dict[str, int] | None = None,
    ) -> None:
        self.time = time
        self.sources: dict[str, int] = {} if sources is None else sources
        self.unverified: dict[str, int] = {} if unverified is None else unverified


def _encode(value: CommunityTime) -> bytes:
    return orjson.dumps([value.time, value.sources, value.unverified])


def _decode(raw: bytes) -> CommunityTime:
    time, sources, unverified = orjson.loads(raw)
    return CommunityTime(time, sources, unverified)


class EventClock:
    """Community event time from per-source progress (see the module docstring)."""

    __slots__ = ("_get", "lateness_ms", "max_skew_ms", "store")

    def __init__(self, *, lateness_ms: int, max_skew_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self.max_skew_ms = max_skew_ms
        self.store: KeyedStore[CommunityTime] = KeyedStore("clock", encode=_encode, decode=_decode)
        self._get = self.store.getter()

    def time(self, community_id: str) -> int | None:
        value = self.store.get(community_id)
        return None if value is None else value.time

    def skewed(self, t: int, broker_ts: int | None) -> bool:
        """Whether ``t`` is further in the future than the allowed skew from ``broker_ts``
        (a missing or nonsense Kafka timestamp — −1, 0 — cannot judge)."""
        return broker_ts is not None and broker_ts > 0 and t > broker_ts + self.max_skew_ms

    def observe(self, community_id: str, source: str, t: int, verified: bool = False) -> bool:
        """Record progress of ``source`` at ``t`` (``verified``: checked against its Kafka
        timestamp); True if ``t`` is late for the community."""
        store = self.store
        value = self._get(community_id)
        if value is None:
            value = CommunityTime()
            store[community_id] = value
        progress = value.sources if verified else value.unverified
        if t > progress.get(source, -1):
            progress[source] = t
            store.touch(community_id)
        now = value.time
        return now is not None and t < now - self.lateness_ms

    def advance(self, community_id: str) -> int | None:
        """Recompute the community's time from its sources (once per batch); returns it."""
        value = self.store.get(community_id)
        if value is None:
            return None
        verified = max(value.sources.values()) if value.sources else None
        unverified = max(value.unverified.values()) if value.unverified else None
        if verified is None:
            derived = unverified
        elif unverified is None:
            derived = verified
        else:
            derived = max(verified, min(unverified, verified + self.max_skew_ms))
        if derived is not None and (value.time is None or derived > value.time):
            value.time = derived
            self.store.touch(community_id)
        return value.time

    def expire(self, forget_ms: int, times: Mapping[str, int] | None = None) -> int:
        """Forget sources that made no progress for ``forget_ms`` before their community's time
        (``times``: the time to forget at per community, e.g. a silent community's wall-clock
        time; default its own). The most advanced verified and unverified source always stay:
        the time is derived from those two alone, so it does not change, and a silent
        community keeps one small record (its time and at most two sources)."""
        dropped = 0
        for cid, value in self.store.items():
            if value.time is None:
                continue
            now = value.time if times is None else times.get(cid, value.time)
            horizon = now - forget_ms
            for progress in (value.sources, value.unverified):
                if len(progress) < 2:
                    continue
                leader = max(progress, key=progress.__getitem__)
                stale = [s for s, p in progress.items() if p < horizon and s != leader]
                if stale:
                    for s in stale:
                        del progress[s]
                    self.store.touch(cid)
                    dropped += len(stale)
        return dropped

    def communities(self) -> list[str]:
        return list(self.store)
