"""``schemas.partitioner.partition_for`` is the Java client's default partitioner, and the
Python producers' partitioners are it (the librdkafka side is checked against a broker in
tests/integration/test_event_keys.py)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner as AioDefault
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from fangxian.ingest.produce import KeyPartitioner, key_partitioner
from schemas.partitioner import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (Java's signed ints)
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "signed"), JAVA_MURMUR2.items(), ids=lambda v: repr(v)[:12])
def test_murmur2_is_the_java_clients(data: bytes, signed: int) -> None:
    assert murmur2(data) == signed & 0xFFFFFFFF


def test_partition_for_agrees_with_the_python_clients_defaults() -> None:
    rng = random.Random(19)
    aio = AioDefault()
    for _ in range(2_000):
        key = rng.randbytes(rng.randrange(0, 40))
        n = rng.randrange(1, 25)
        parts = list(range(n))
        assert murmur2(key) == kafka_python_murmur2(key)
        assert partition_for(key, n) == aio(key, parts, parts) == key_partitioner(key, parts, [])


class _Cluster:
    def __init__(self, n: int) -> None:
        self._n = n

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self._n))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return {1}


def test_kafka_python_partitioner_places_keys_by_partition_for() -> None:
    cluster = _Cluster(6)
    partitioner = KeyPartitioner()
    for i in range(200):
        key = f"91350100M000{i:03d}Y43".encode()
        assert partitioner.partition("t", None, key, None, b"", cluster) == partition_for(key, 6)
    # an unkeyed record (a malformed device message) goes to an available partition
    assert partitioner.partition("t", None, None, None, b"", cluster) == 1
    with pytest.raises(ValueError, match="not found"):
        partitioner.partition("other", None, b"k", None, b"", cluster)
