"""BatchPublisher puts each keyed message on the partition a per-message send would choose."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.publish import BatchPublisher


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.items: list[tuple[bytes | None, bytes]] = []
        self.capacity = capacity

    def append(
        self, *, key: bytes | None, value: bytes, timestamp: Any, headers: Any = ()
    ) -> object | None:
        if len(self.items) >= self.capacity:
            return None
        self.items.append((key, value))
        return object()


class FakeProducer:
    """Records what the publisher hands over (a unit test of one piece: no broker)."""

    def __init__(self, partitions: int, capacity: int) -> None:
        self.partitions = partitions
        self.capacity = capacity
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> str:
        self.sent.append((topic, partition, batch.items))
        return "future"


@pytest.mark.parametrize(
    ("messages", "capacity"),
    [
        pytest.param(100, 1000, id="one batch per partition"),
        pytest.param(100, 3, id="full batches are split, nothing lost"),
        pytest.param(1, 1000, id="a single message"),
    ],
)
def test_keys_land_on_the_default_partitioner_choice(messages: int, capacity: int) -> None:
    producer = FakeProducer(partitions=6, capacity=capacity)
    publisher = BatchPublisher(producer)  # type: ignore[arg-type]
    batch = [("t", f"subject-{i % 17}".encode(), f"v{i}".encode()) for i in range(messages)]
    asyncio.run(publisher.publish(batch))
    asyncio.run(publisher.publish(batch))  # second time from the key cache
    choose = DefaultPartitioner()
    placed = [(p, k, v) for _, p, items in producer.sent for k, v in items]
    assert len(placed) == 2 * messages
    for partition, key, _ in placed:
        assert partition == choose(key, list(range(6)), list(range(6)))
    # order within a key is kept (per-partition order is what Kafka guarantees)
    per_key = [v for _, k, v in placed[:messages] if k == b"subject-0"]
    assert per_key == [v for _, k, v in batch if k == b"subject-0"]
