"""Every producer of events puts a community's events on the partition ``partition_for`` gives
its ``community_id`` (the contract's key): kafka-python (``RecordProducer``: devices, loaders,
the simulator, the demo, the test harnesses), aiokafka (the bench's prefill) and
confluent-kafka with ``murmur2_random`` (the bench's paced load generator), on a real broker.
Control: librdkafka's own default partitioner puts some of the same keys elsewhere."""

from __future__ import annotations

import asyncio
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from fangxian.bench.workload import encode_records, produce_encoded
from fangxian.core.settings import Settings
from fangxian.ingest.produce import LIBRDKAFKA_PARTITIONER, RecordProducer, route
from schemas import Codec
from schemas.partitioner import partition_for
from schemas.topics import EVENT_ROUTES, record_key
from tests.integration.pipeline_harness import fresh_example

COMMUNITIES = [f"91350100M{i:06d}Y4{i % 10}" for i in range(24)]
EXAMPLE = {"GateScan": "resident_qr", "TemperatureReading": None, "HealthReport": None}


def _events() -> list[tuple[str, dict[str, Any]]]:
    """One event of each kind per community (fresh event ids)."""
    return [
        (r.record, fresh_example(r.record, EXAMPLE[r.record], community_id=cid))
        for cid in COMMUNITIES
        for r in EVENT_ROUTES
    ]


def _placed(settings: Settings, topics: list[str]) -> dict[str, tuple[bytes, int]]:
    """event_id → (key, partition) of everything on ``topics``."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    codec = Codec()
    names = {getattr(settings.topics, r.topic): r.record for r in EVENT_ROUTES}
    found: dict[str, tuple[bytes, int]] = {}
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(parts)
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    event = codec.decode(names[tp.topic], m.value)
                    found[event["event_id"]] = (m.key, tp.partition)
    finally:
        consumer.close()
    return found


def _confluent(settings: Settings, events: list[tuple[str, dict[str, Any]]], **extra: Any) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **extra})
    codec = Codec()
    for name, event in events:
        topic, key = route(settings.topics, name, event)
        producer.produce(topic, codec.encode(name, event), key)
    assert producer.flush(30) == 0


def test_every_client_places_a_communitys_events_by_partition_for(topics: Settings) -> None:
    settings = topics
    by_client = {client: _events() for client in ("kafka-python", "aiokafka", "confluent-kafka")}
    control = _events()

    producer = RecordProducer(settings)
    for name, event in by_client["kafka-python"]:
        producer.send(name, event)
    producer.close()
    encoded = encode_records(Codec(), settings.topics, by_client["aiokafka"])
    asyncio.run(produce_encoded(settings.kafka_bootstrap, encoded))
    _confluent(settings, by_client["confluent-kafka"], partitioner=LIBRDKAFKA_PARTITIONER)
    _confluent(settings, control)  # librdkafka's default: consistent_random (CRC32)

    event_topics = [getattr(settings.topics, r.topic) for r in EVENT_ROUTES]
    placed = _placed(settings, event_topics)
    n = settings.event_partitions
    for client, events in by_client.items():
        for name, event in events:
            key, partition = placed[event["event_id"]]
            assert key == record_key(name, event) == event["community_id"].encode(), client
            assert partition == partition_for(key, n), (client, name, event["community_id"])
        used = {placed[e["event_id"]][1] for _, e in events}
        assert len(used) == n, (client, used)  # the keys spread: the check can tell them apart
    misplaced = [
        e["community_id"]
        for _, e in control
        if placed[e["event_id"]][1] != partition_for(e["community_id"].encode(), n)
    ]
    assert misplaced, "control: librdkafka's default partitioner agreed on every key"
