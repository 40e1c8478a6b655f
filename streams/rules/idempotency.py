"""Bounded memory of recent event ids, so a replayed event is counted once.

Two generations of dicts: when the current one is full it becomes the previous one and the old
previous one is dropped. Lookups and inserts are O(1); between ``capacity`` and ``2 * capacity``
of the most recent ids are remembered.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class RecentIds(Generic[V]):
    __slots__ = ("_capacity", "_current", "_previous")

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._current: dict[str, V] = {}
        self._previous: dict[str, V] = {}

    def get(self, event_id: str) -> V | None:
        value = self._current.get(event_id)
        if value is None:
            value = self._previous.get(event_id)
        return value

    def put(self, event_id: str, value: V) -> None:
        if len(self._current) >= self._capacity:
            self._previous = self._current
            self._current = {}
        self._current[event_id] = value

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._current or event_id in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
