"""End-to-end decision latency at fixed offered loads.

A paced producer sends gate scans (``event_time`` = the send's wall clock) to the latency topic
set; a separate consumer reads ``gate.decisions`` and matches each decision to its scan by
``event_id``. Latency = the decision's receive time in the harness − the scan's send time (both
this process's clock), and also the decision message's Kafka timestamp (the worker's produce
time) − the scan's send time. The worker runs in its own process (``fangxian.bench.worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from fangxian.bench.stats import latency_summary, rate
from fangxian.core.settings import Settings
from fangxian.ingest.produce import route
from schemas import Codec

log = logging.getLogger(__name__)

TICK_S = 0.002
MAX_BURST = 2_000


def due_count(elapsed_s: float, rate_per_s: float) -> int:
    """How many messages a paced producer should have sent after ``elapsed_s``."""
    return int(elapsed_s * rate_per_s) if elapsed_s > 0 else 0


class _Tracker:
    """Send times by event id, and the latencies of the decisions that came back."""

    def __init__(self) -> None:
        self.sent_ms: dict[str, float] = {}
        self.receive_ms: list[float] = []
        self.produce_ms: list[float] = []

    def reset(self) -> None:
        self.sent_ms.clear()
        self.receive_ms = []
        self.produce_ms = []

    def decided(self, event_id: str, received_ms: float, kafka_ts_ms: int) -> None:
        sent = self.sent_ms.pop(event_id, None)
        if sent is not None:
            self.receive_ms.append(received_ms - sent)
            self.produce_ms.append(kafka_ts_ms - sent)


async def _read_decisions(
    settings: Settings, codec: Codec, tracker: _Tracker, ready: asyncio.Event
) -> None:
    topic = settings.topics.gate_decisions
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = [
            TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        ready.set()
        decode = codec.decode
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=5_000)
            now_ms = time.time() * 1000
            for messages in batches.values():
                for msg in messages:
                    decision = decode("GateDecision", msg.value)
                    tracker.decided(decision["event_id"], now_ms, msg.timestamp)
    finally:
        await consumer.stop()


async def _paced(
    producer: AIOKafkaProducer,
    settings: Settings,
    codec: Codec,
    templates: Sequence[dict[str, Any]],
    tracker: _Tracker,
    rate_per_s: float,
    duration_s: float,
) -> tuple[int, float]:
    """Send scans at ``rate_per_s`` for ``duration_s``; (sent, seconds taken)."""
    encode = codec.encode
    send = producer.send
    sent_ms = tracker.sent_ms
    source = itertools.cycle(templates)
    base = uuid.uuid4().int & ~((1 << 64) - 1)
    sent = 0
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= duration_s:
            break
        burst = min(due_count(elapsed, rate_per_s) - sent, MAX_BURST)
        for _ in range(burst):
            now_ms = time.time() * 1000
            scan = {
                **next(source),
                "event_id": str(uuid.UUID(int=base + sent)),
                "event_time": int(now_ms),
            }
            topic, key = route(settings.topics, "GateScan", scan)
            sent_ms[scan["event_id"]] = now_ms
            await send(topic, encode("GateScan", scan), key=key)
            sent += 1
        await asyncio.sleep(TICK_S)
    await producer.flush()
    return sent, time.monotonic() - started


async def _drain(tracker: _Tracker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while tracker.sent_ms and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def measure_latency(
    settings: Settings,
    codec: Codec,
    templates: Sequence[dict[str, Any]],
    loads: Sequence[float],
    *,
    duration_s: float,
    warmup_s: float = 2.0,
    drain_s: float = 15.0,
) -> list[dict[str, Any]]:
    """One figure dict per offered load (events/s), against a worker already running on
    ``settings``' topics."""
    tracker = _Tracker()
    ready = asyncio.Event()
    reader = asyncio.create_task(_read_decisions(settings, codec, tracker, ready))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=1, acks=1)
    await producer.start()
    results = []
    try:
        await asyncio.wait_for(ready.wait(), timeout=30)
        # warm-up: the worker joins its group and serves the first decisions
        await _paced(producer, settings, codec, templates, tracker, 200.0, warmup_s)
        await _drain(tracker, 60.0)
        if tracker.sent_ms:
            raise RuntimeError("no decisions during the warm-up: is the latency worker running?")
        for load in loads:
            tracker.reset()
            sent, seconds = await _paced(
                producer, settings, codec, templates, tracker, load, duration_s
            )
            await _drain(tracker, drain_s)
            figures: dict[str, Any] = {
                "offered_per_s": load,
                "achieved_per_s": rate(sent, seconds),
                "sent": sent,
                "decided": len(tracker.receive_ms),
                "missing": len(tracker.sent_ms),
                **latency_summary(tracker.receive_ms),
                "produce_ts": latency_summary(tracker.produce_ms),
            }
            log.info("latency at %.0f/s: %s", load, figures)
            results.append(figures)
            await asyncio.sleep(1.0)
    finally:
        await producer.stop()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return results
