"""The event clock: a community's time derived from the progress of its sources.

Each *source* (a device: a gate scanner, an infrared gate, a handheld gun, the reporting app)
has a progress — the highest event time seen from it. The community's time is the *lower
median* of the progress of its live sources (those not more than ``idle_ms`` behind the
community's time), and it never goes back. So one fast clock cannot move a community: with
three devices, the one eight hours ahead is the top value and the median is a real one; with
two, the lower one counts. A source that stops sending drops out of the median after ``idle_ms``.

Two more guards against bad clocks (issue 9, defect 2):

* *future skew*: an event stamped more than ``max_skew_ms`` after its Kafka timestamp (the time
  the broker or the producing client saw it) is clamped to that timestamp by the engine and
  raises DEVICE_CLOCK_SKEW; the clock never sees the future value;
* the community's time is recomputed once per batch (``advance``), after the batch's events are
  recorded, so everything in one batch is judged against the same time — a batch is processed
  in event-time order and nothing in it is late because of a newer event in the same batch.

An event is *late* when it is more than the allowed lateness behind the community's time. Late
events still get all their outputs and still count (exits, entries); only the windows that
close on event time (fever rechecks, drift) treat them as too old.

State: store ``clock``, key = community id, value = ``[time, {source: progress}]``.
"""

from __future__ import annotations

import json

from streams.state.store import KeyedStore


class CommunityTime:
    """Progress per source and the derived community time of one community."""

    __slots__ = ("sources", "time")

    def __init__(self, time: int | None = None, sources: dict[str, int] | None = None) -> None:
        self.time = time
        self.sources: dict[str, int] = {} if sources is None else sources


def _encode(value: CommunityTime) -> bytes:
    return json.dumps([value.time, value.sources], separators=(",", ":")).encode()


def _decode(raw: bytes) -> CommunityTime:
    time, sources = json.loads(raw)
    return CommunityTime(time, {str(k): int(v) for k, v in sources.items()})


class EventClock:
    """Community event time from per-source progress (see the module docstring)."""

    __slots__ = ("idle_ms", "lateness_ms", "max_skew_ms", "store")

    def __init__(self, *, lateness_ms: int, max_skew_ms: int, idle_ms: int = 900_000) -> None:
        self.lateness_ms = lateness_ms
        self.max_skew_ms = max_skew_ms
        self.idle_ms = idle_ms
        self.store: KeyedStore[CommunityTime] = KeyedStore("clock", encode=_encode, decode=_decode)

    def time(self, community_id: str) -> int | None:
        value = self.store.get(community_id)
        return None if value is None else value.time

    def skewed(self, t: int, broker_ts: int | None) -> bool:
        """Whether ``t`` is further in the future than the allowed skew from ``broker_ts``
        (a missing or nonsense Kafka timestamp — −1, 0 — cannot judge)."""
        return broker_ts is not None and broker_ts > 0 and t > broker_ts + self.max_skew_ms

    def observe(self, community_id: str, source: str, t: int) -> bool:
        """Record progress of ``source`` at ``t``; True if ``t`` is late for the community."""
        store = self.store
        value = store.get(community_id)
        if value is None:
            store[community_id] = CommunityTime(None, {source: t})
            return False
        sources = value.sources
        if t > sources.get(source, -1):
            sources[source] = t
            store.touch(community_id)
        now = value.time
        return now is not None and t < now - self.lateness_ms

    def advance(self, community_id: str) -> int | None:
        """Recompute the community's time from its sources (once per batch); returns it."""
        value = self.store.get(community_id)
        if value is None:
            return None
        progress = sorted(value.sources.values())
        now = value.time
        # sources that fell more than idle_ms behind the community's time (stopped sending, or
        # a clock hours slow) do not hold it back; a fast one is one value of the median
        live = progress if now is None else [p for p in progress if p >= now - self.idle_ms]
        if not live:
            live = progress
        derived = live[(len(live) - 1) // 2]
        if value.time is None or derived > value.time:
            value.time = derived
            self.store.touch(community_id)
        return value.time

    def expire(self, forget_ms: int) -> int:
        """Forget sources that made no progress for ``forget_ms`` before their community's time."""
        dropped = 0
        for cid, value in self.store.items():
            if value.time is None:
                continue
            stale = [s for s, p in value.sources.items() if p < value.time - forget_ms]
            if stale and len(stale) < len(value.sources):
                for s in stale:
                    del value.sources[s]
                self.store.touch(cid)
                dropped += len(stale)
        return dropped

    def communities(self) -> list[str]:
        return list(self.store)
