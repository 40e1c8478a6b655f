"""Which partition a keyed record goes to: the Java client's default partitioner.

``partition_for(key, n)`` = murmur2(key), made positive, modulo ``n``
(``org.apache.kafka.common.utils.Utils.murmur2`` / ``toPositive``) — what the Java producer,
kafka-python and aiokafka do for a keyed record, and librdkafka with
``"partitioner": "murmur2_random"`` (its own default, ``consistent_random``, is CRC32 and puts
keys elsewhere). Devices, loaders, the simulator, the bench, the tests and the decide stage all
place a record with this one function, so "a community lives in one partition" holds for every
producer.

Pure Python and no Kafka client import: the contract layer sits below the clients, and the
rule engine (which may not import one) asks it which communities a task owns.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's ``Utils.murmur2`` computes it, as an unsigned 32-bit
    int (Java's signed int plus 2**32 when negative)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: murmur2, positive, modulo the count."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
