"""The benchmark's input: a simulated community's reference data and event mix, encoded once
with the contract codec and produced fast with aiokafka; topic sets for each phase."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

from fangxian.core.settings import Settings, Topics
from fangxian.ingest.produce import key_partitioner, route
from fangxian.sim import CommunitySimulator
from infra.topics import create_topics, topic_specs
from schemas import Codec
from schemas.topics import RECORD_OF_KIND

log = logging.getLogger(__name__)

DAY_S = 86_400
#: (topic, key, value) as it goes to Kafka
Encoded = tuple[str, bytes, bytes]


@dataclass(frozen=True)
class Workload:
    """What the prefill produced: the simulator (for templates) and the per-topic counts."""

    simulator: CommunitySimulator
    events: int
    by_record: dict[str, int]
    scans: list[dict[str, Any]]


def prefixed(topics: Topics, prefix: str, fields: Iterable[str]) -> Topics:
    """``topics`` with ``prefix`` in front of the named fields only."""
    return replace(topics, **{f: prefix + getattr(topics, f) for f in fields})


def ensure_topics(
    settings: Settings, extra_config: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Create ``settings``' topics; ``extra_config`` adds topic config by topic name (at
    creation only: an existing topic is left as it is)."""
    specs = [
        replace(spec, config={**spec.config, **(extra_config or {}).get(spec.name, {})})
        for spec in topic_specs(settings)
    ]
    create_topics(settings.kafka_bootstrap, specs)


def build_simulator(*, communities: int, residents: int, seed: int) -> CommunitySimulator:
    """A simulator of ``communities`` communities whose day ends now."""
    start_ms = int(time.time() * 1000) - DAY_S * 1000
    return CommunitySimulator(communities, residents, seed, start_ms=start_ms)


def simulated_events(sim: CommunitySimulator, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` events of a simulated day (rate chosen so a day holds ~5 % more)."""
    rate = max(count * 1.05 / DAY_S, 0.01)
    return list(itertools.islice(sim.events(DAY_S, rate), count))


def encode_records(
    codec: Codec, topics: Topics, records: Iterable[tuple[str, dict[str, Any]]]
) -> list[Encoded]:
    out: list[Encoded] = []
    encode = codec.encode
    for name, record in records:
        topic, key = route(topics, name, record)
        out.append((topic, key, encode(name, record)))
    return out


def reference_pairs(sim: CommunitySimulator) -> list[tuple[str, dict[str, Any]]]:
    return [
        (RECORD_OF_KIND[kind], record)
        for kind, records in sim.reference_records().items()
        for record in records
    ]


async def produce_encoded(bootstrap: str, messages: Iterable[Encoded]) -> int:
    """Send pre-encoded messages as fast as the client allows; returns how many were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks=1,
        partitioner=key_partitioner,
    )
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for topic, key, value in messages:
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The current end offset of every partition of ``topics``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        ends: dict[TopicPartition, int] = consumer.end_offsets(parts)
        return ends
    finally:
        consumer.close()


def committed_record_ends(
    bootstrap: str, topics: Sequence[str], tail: int = 500
) -> dict[TopicPartition, int]:
    """Per partition of ``topics`` (written in transactions), the offset after its last
    *committed record* — what a group that consumed everything commits (``offset + 1``); the end
    offset lies past it by the transactions' control markers (one or more). Read from the last
    ``tail`` offsets, read_committed; a partition whose tail holds no record gets its start of
    tail (a partition with only markers, 0)."""
    ends = end_offsets(bootstrap, topics)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    out: dict[TopicPartition, int] = {}
    try:
        for tp, end in ends.items():
            start = max(0, end - tail)
            out[tp] = start
            if end == 0:
                continue
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + 30
            while consumer.position(tp) < end and time.monotonic() < deadline:
                for record in consumer.poll(timeout_ms=500).get(tp, []):
                    out[tp] = record.offset + 1
    finally:
        consumer.close()
    return out


def prefill(
    settings: Settings,
    codec: Codec,
    *,
    events: int,
    communities: int,
    residents: int,
    seed: int,
) -> Workload:
    """Create the topics, produce the reference data, then ``events`` simulated events."""
    ensure_topics(settings)
    sim = build_simulator(communities=communities, residents=residents, seed=seed)
    reference = encode_records(codec, settings.topics, reference_pairs(sim))
    started = time.monotonic()
    pairs = simulated_events(sim, events)
    encoded = encode_records(codec, settings.topics, pairs)
    log.info("simulated and encoded %d events in %.1f s", len(pairs), time.monotonic() - started)
    started = time.monotonic()
    asyncio.run(produce_encoded(settings.kafka_bootstrap, reference))
    sent = asyncio.run(produce_encoded(settings.kafka_bootstrap, encoded))
    seconds = time.monotonic() - started
    log.info(
        "prefill: %d reference records, %d events produced in %.1f s (%.0f/s)",
        len(reference),
        sent,
        seconds,
        sent / seconds if seconds else 0,
    )
    counts = Counter(name for name, _ in pairs)
    scans = [event for name, event in pairs if name == "GateScan"]
    return Workload(sim, sent, dict(counts), scans)
