"""Producing a batch's outputs (decisions, alerts, dead letters, re-routed events, changelog
deltas) with one hand-off per partition instead of one awaited ``send`` per message — the
per-message path cost more than the rules themselves (37 % of the worker's time in the benchmark
profile)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The Java client's default partitioner (murmur2, positive, modulo the count), defined once in
# the contract layer so devices, loaders and the stages place a key alike; re-exported here.
from schemas.partitioner import partition_for

__all__ = ["BatchPublisher", "Headers", "Message", "OutRecord", "partition_for"]

Message = tuple[str, bytes | None, bytes]
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: an explicit partition (None: by key), headers, timestamp."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = ()
    timestamp_ms: int | None = None


class BatchPublisher:
    """Groups messages by topic partition (the default key partitioner, so a key lands where a
    per-message ``send`` would put it) and hands each group over as one batch."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._partitions: dict[str, int] = {}
        # murmur2 is pure Python (a few µs a key); subjects and communities repeat
        self._key_partition: dict[tuple[str, bytes], int] = {}
        #: (topic, partition, records, delivery future) of every batch of the last publish
        self.last_batches: list[tuple[str, int, int, Any]] = []

    async def partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            n = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        return n

    async def publish(self, messages: Sequence[Message | OutRecord]) -> list[Any]:
        """Queue every message; returns the delivery futures (``producer.flush()`` awaits all)."""
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Headers, Any]]] = {}
        cache = self._key_partition
        if len(cache) > 500_000:
            cache.clear()
        for m in messages:
            if isinstance(m, OutRecord):
                topic, key, value, partition = m.topic, m.key, m.value, m.partition
                headers, ts = m.headers, m.timestamp_ms
            else:
                (topic, key, value), partition, headers, ts = m, None, (), None
            if partition is None:
                partition = cache.get((topic, key)) if key is not None else None
                if partition is None:
                    n = self._partitions.get(topic) or await self.partition_count(topic)
                    partition = partition_for(key, n) if key is not None else 0
                    if key is not None:
                        cache[(topic, key)] = partition
            groups.setdefault((topic, partition), []).append((key, value, headers, ts))
        futures: list[Any] = []
        self.last_batches = []
        producer = self._producer
        for (topic, partition), items in groups.items():
            batch = producer.create_batch()
            n = 0
            for key, value, headers, ts in items:
                if batch.append(key=key, value=value, timestamp=ts, headers=list(headers)) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    self.last_batches.append((topic, partition, n, futures[-1]))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=ts, headers=list(headers))
                    n = 0
                n += 1
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            self.last_batches.append((topic, partition, n, futures[-1]))
        return futures
