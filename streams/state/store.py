"""The one state primitive: a keyed store owned by one partition, changelogged to Kafka.

Every piece of rule state (entry quotas, dedupe, pass counts, fever rechecks, device health,
observation logs, replay memory, the event clock, alert suppression) lives in a ``KeyedStore``.
A store remembers which keys changed since the last ``take_changes()``; the decide stage sends
those changes — one record per changed key, the latest value or a tombstone — to the changelog
topic inside the same Kafka transaction as the batch's outputs and input offsets, and on
assignment replays the changelog partition into a fresh store with ``restore``.

Kafka Streams' state model (``ProcessorStateManager``), faust ``tables/recovery.py``, quix
``state/recovery.py``: restore time grows with the state, not with the event history.

Values are plain JSON-able data (lists, dicts, numbers, strings) by default; a store may take
its own ``encode``/``decode``. A state object keeps its values *in* the store and calls
``touch(key)`` after mutating a value in place, so the change reaches the changelog.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

V = TypeVar("V")

#: changelog record key: ``<store name><SEP><state key>`` (store names never contain SEP)
SEP = "\x1f"

Change = tuple[str, bytes | None]


def json_encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_decode(raw: bytes) -> Any:
    return json.loads(raw)


class KeyedStore(Generic[V]):
    """A dict of state key → value that tracks its changed keys for the changelog."""

    __slots__ = ("_data", "_decode", "_dirty", "_encode", "name")

    def __init__(
        self,
        name: str,
        *,
        encode: Callable[[V], bytes] = json_encode,
        decode: Callable[[bytes], V] = json_decode,
    ) -> None:
        if SEP in name:
            raise ValueError(f"store name {name!r} must not contain the separator")
        self.name = name
        self._data: dict[str, V] = {}
        self._dirty: set[str] = set()
        self._encode = encode
        self._decode = decode

    # -- mapping
    def get(self, key: str, default: V | None = None) -> V | None:
        return self._data.get(key, default)

    def getter(self) -> Callable[[str], V | None]:
        """A fast lookup (``dict.get`` of the data) for hot paths; stays valid for the store's
        life (restore and clear keep the same dict)."""
        return self._data.get

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __setitem__(self, key: str, value: V) -> None:
        self._data[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._dirty.add(key)

    def pop(self, key: str, default: V | None = None) -> V | None:
        if key in self._data:
            self._dirty.add(key)
            return self._data.pop(key)
        return default

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def items(self) -> Iterator[tuple[str, V]]:
        return iter(list(self._data.items()))

    def values(self) -> Iterator[V]:
        return iter(list(self._data.values()))

    def touch(self, key: str) -> None:
        """The value under ``key`` was mutated in place: send it with the next changes."""
        if key in self._data:
            self._dirty.add(key)

    # -- changelog
    def take_changes(self) -> list[Change]:
        """(key, encoded value or None for a deletion) for every key changed since the last
        call, in key order (deterministic changelog content for the same events)."""
        if not self._dirty:
            return []
        data, encode = self._data, self._encode
        changes: list[Change] = [
            (key, encode(data[key]) if key in data else None) for key in sorted(self._dirty)
        ]
        self._dirty.clear()
        return changes

    def has_changes(self) -> bool:
        return bool(self._dirty)

    def restore(self, key: str, raw: bytes | None) -> None:
        """Apply one changelog record (a tombstone deletes). Restoring marks nothing dirty."""
        if raw is None:
            self._data.pop(key, None)
        else:
            self._data[key] = self._decode(raw)

    def snapshot(self) -> dict[str, bytes]:
        """Every key with its encoded value (what a full changelog compaction would hold)."""
        return {key: self._encode(value) for key, value in self._data.items()}

    def clear(self) -> None:
        """Forget everything without a changelog record (a partition was revoked)."""
        self._data.clear()
        self._dirty.clear()


def changelog_key(store: str, key: str) -> bytes:
    return f"{store}{SEP}{key}".encode()


def split_changelog_key(raw: bytes) -> tuple[str, str]:
    store, sep, key = raw.decode().partition(SEP)
    if not sep:
        raise ValueError(f"not a changelog key: {raw!r}")
    return store, key
