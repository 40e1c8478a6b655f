"""Restore time of a decide task: a changelog partition holding N state keys is read back into
its store, the way a task is restored on assignment (``streams.state.changelog``).

``python -m fangxian.bench.restore --keys 1000000`` starts its own Kafka broker (loopback) unless
``--bootstrap`` is given, fills one changelog partition with N keys (values the size of a quota
entry), and times ``restore_partitions`` into a ``KeyedStore``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.topics import TopicSpec, create_topics
from streams.state.changelog import StoreSet, restore_partitions
from streams.state.store import KeyedStore, changelog_key, json_encode


def _value(i: int) -> bytes:
    # an entry-quota key's value: the exit times of the window (a few epoch-ms numbers)
    base = 1_764_547_200_000 + i
    return json_encode([base, base + 3_600_000, base + 7_200_000])


async def fill(bootstrap: str, topic: str, keys: int) -> float:
    """Produce ``keys`` changelog records (one per key) to partition 0; seconds taken."""
    began = time.monotonic()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
        max_batch_size=1024 * 1024,
    )  # fmt: skip
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(keys):
            key = changelog_key("quota", f"household:{i:08d}")
            if batch.append(key=key, value=_value(i), timestamp=None) is None:
                await producer.send_batch(batch, topic, partition=0)
                batch = producer.create_batch()
                batch.append(key=key, value=_value(i), timestamp=None)
        await producer.send_batch(batch, topic, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - began


async def time_restore(bootstrap: str, topic: str) -> dict[str, Any]:
    store: KeyedStore[Any] = KeyedStore("quota")
    state = StoreSet([store])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        done = await restore_partitions(consumer, {tp: (0, state.restore)})
    finally:
        await consumer.stop()
    result = done[tp]
    return {
        "restored_records": result.records,
        "restored_keys": len(store),
        "restore_seconds": round(result.seconds, 2),
        "records_per_s": round(result.records / result.seconds) if result.seconds else None,
    }


async def measure(bootstrap: str, keys: int) -> dict[str, Any]:
    topic = f"bench-restore-{uuid.uuid4().hex[:8]}-decide-changelog"
    create_topics(
        bootstrap, [TopicSpec(topic, 1, 1, {"cleanup.policy": "compact"})], tolerate_existing=False
    )
    fill_s = await fill(bootstrap, topic, keys)
    report = await time_restore(bootstrap, topic)
    return {"keys": keys, "fill_seconds": round(fill_s, 2), **report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fangxian.bench.restore")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    args = parser.parse_args(argv)
    if args.bootstrap:
        report = asyncio.run(measure(args.bootstrap, args.keys))
    else:
        from infra.kafka_broker import KafkaBroker

        with KafkaBroker() as broker:
            report = asyncio.run(measure(broker.bootstrap, args.keys))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
