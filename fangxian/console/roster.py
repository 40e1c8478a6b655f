"""The staff directory of the console: the compacted ``reference.staff`` topic (the on-duty
dispatcher's roster, loaded by ``fangxian load staff``), followed from the beginning without a
consumer group, latest record per staff id wins, a tombstone removes. Only the id, community,
display name, role and active flag are kept — the encrypted contacts are not opened here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from fangxian.console.scope import StaffEntry
from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent

log = logging.getLogger(__name__)

STAFF_RECORD = "StaffMember"


def entry_of(record: Mapping[str, Any]) -> StaffEntry:
    return StaffEntry(
        staff_id=record["staff_id"],
        community_id=record["community_id"],
        display_name=record["display_name"],
        role=record.get("role", "OTHER"),
        active=bool(record.get("active", True)),
    )


class StaffDirectory:
    """Staff by id. ``apply`` is the whole logic; ``follow`` feeds it from Kafka."""

    def __init__(self, entries: Mapping[str, StaffEntry] | None = None) -> None:
        self.staff: dict[str, StaffEntry] = dict(entries or {})
        self.loaded = asyncio.Event()
        if entries is not None:
            self.loaded.set()

    def apply(self, staff_id: str, record: Mapping[str, Any] | None) -> None:
        if record is None:
            self.staff.pop(staff_id, None)
        else:
            self.staff[staff_id] = entry_of(record)

    def get(self, staff_id: str) -> StaffEntry | None:
        entry = self.staff.get(staff_id)
        return entry if entry is not None and entry.active else None

    def communities(self) -> set[str]:
        return {s.community_id for s in self.staff.values()}

    async def follow(self, settings: Settings, stop: asyncio.Event) -> None:
        """Read ``reference.staff`` to its end (then ``loaded`` is set) and keep following."""
        codec = Codec()
        topic = settings.topics.staff
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            bootstrap_servers=settings.kafka_bootstrap,
            **kafka_client_kwargs(settings, "aiokafka"),
        )
        await consumer.start()
        try:
            parts = await topic_partitions(consumer, topic, settings)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            if tps:
                await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps) if tps else {}
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for messages in batches.values():
                    for msg in messages:
                        key = msg.key.decode() if msg.key else ""
                        if msg.value is None:
                            self.apply(key, None)
                            continue
                        try:
                            self.apply(key, codec.decode(STAFF_RECORD, msg.value))
                        except InvalidEvent as err:
                            log.error("skipping undecodable staff record %s: %s", key, err)
                if not self.loaded.is_set():
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= end[tp] for tp in tps):
                        self.loaded.set()
                        log.info("staff directory loaded 人员名册: %d staff", len(self.staff))
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, settings: Settings) -> set[int]:
    """The partitions of ``topic`` (a consumer without subscription has no metadata for it,
    so ask the cluster through the client's public ``topics()`` refresh, then a producer)."""
    parts = consumer.partitions_for_topic(topic)
    if parts:
        return set(parts)
    if topic not in await consumer.topics():
        # a topic the principal may not DESCRIBE is missing from its metadata just the same
        raise RuntimeError(
            f"topic {topic} 不存在或无权访问 does not exist or this Kafka user may not read it: "
            "run `fangxian topics create` / `fangxian acl apply`"
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "aiokafka")
    )
    await producer.start()
    try:
        return set(await producer.partitions_for(topic))
    finally:
        await producer.stop()
