"""The raw ceiling: what one process gets from aiokafka consume + contract decode alone."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from fangxian.bench.stats import rate
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from schemas.topics import record_of_topic

log = logging.getLogger(__name__)


async def measure_ceiling(
    settings: Settings, codec: Codec, expected: int, *, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Consume the event topics from the start (a fresh consumer group) and decode every
    message, as the worker's processor does; time from the first batch to the last message."""
    record_of = record_of_topic(settings.topics, "event")
    consumer = AIOKafkaConsumer(
        *record_of,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_wait_ms=max(1, int(settings.batch_within_s * 1000)),
    )
    await consumer.start()
    decode = codec.decode
    seen = invalid = 0
    first = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.batch_max)
            if batches and not first:
                first = time.monotonic()
            for messages in batches.values():
                for msg in messages:
                    try:
                        decode(record_of[msg.topic], msg.value)
                    except InvalidEvent:
                        invalid += 1
                seen += len(messages)
        seconds = time.monotonic() - first if first else 0.0
    finally:
        await consumer.stop()
    figures = {
        "events": seen,
        "invalid": invalid,
        "seconds": round(seconds, 3),
        "events_per_s": rate(seen, seconds),
        "complete": seen >= expected,
    }
    log.info("ceiling: %s", figures)
    return figures
