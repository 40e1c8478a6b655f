"""Ceilings: what one process gets from a Kafka client alone, and with the project's codec.

For each client — confluent-kafka (librdkafka, ``Consumer.consume(num_messages=...)``) and
aiokafka (``getmany``) — the event topics are read from the start with a fresh consumer
group, once with a plain fastavro read of each body (the *raw ceiling*: consume + Avro read, no
validation) and once with ``Codec.decode`` (the project's validating decode). Time runs from the
first batch to the last message. Runs alternate between the clients so both see the same
machine load. ``consume_only`` (the body untouched) is the client alone. Each figure is also
given per CPU second of this process (all its threads, librdkafka's included).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any, cast

from aiokafka import AIOKafkaConsumer
from fastavro import parse_schema, schemaless_reader

from fangxian.bench.stats import rate
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent, contract
from schemas.codec import HEADER_SIZE, strip_logical_types
from schemas.topics import record_of_topic

log = logging.getLogger(__name__)

CONFLUENT = "confluent_kafka"
AIOKAFKA = "aiokafka"
CLIENTS = (CONFLUENT, AIOKAFKA)
#: how each client is driven, for the JSON
HOW = {
    CONFLUENT: "confluent-kafka Consumer.consume(num_messages=batch_max)",
    AIOKAFKA: "aiokafka AIOKafkaConsumer.getmany(max_records=batch_max)",
}
FETCH_BYTES = 4 * 1024 * 1024

#: (record name, message value) -> None; raises InvalidEvent for a bad message
Handler = Callable[[str, bytes], Any]


def _record_of(settings: Settings) -> dict[str, str]:
    return record_of_topic(settings.topics, "event")


def fastavro_reader(record_names: Mapping[str, str]) -> Handler:
    """A handler that reads each body with plain fastavro (the current writer schemas)."""
    parsed = {
        name: parse_schema(strip_logical_types(contract.schema(name)))
        for name in set(record_names.values())
    }

    def read(name: str, value: bytes) -> Any:
        fo = BytesIO(value)
        fo.seek(HEADER_SIZE)
        return schemaless_reader(fo, parsed[name], None)

    return read


def _ignore(name: str, value: bytes) -> None:
    """Consume only: the client's own cost, the body untouched."""


def codec_decoder(codec: Codec) -> Handler:
    """A handler that decodes and validates each message as the worker does."""
    return codec.decode


def consume_confluent(
    settings: Settings, expected: int, handle: Handler, *, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Read ``expected`` messages of the event topics with confluent-kafka."""
    from confluent_kafka import Consumer

    record_of = _record_of(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-ceiling-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": FETCH_BYTES,
            "fetch.wait.max.ms": max(1, int(settings.batch_within_s * 1000)),
        }
    )
    consumer.subscribe(list(record_of))
    seen = invalid = 0
    first = first_cpu = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            messages = consumer.consume(num_messages=settings.batch_max, timeout=0.2)
            if messages and not first:
                first, first_cpu = time.monotonic(), time.process_time()
            for msg in messages:
                if msg.error() is not None:
                    continue
                try:
                    handle(record_of[cast(str, msg.topic())], cast(bytes, msg.value()))
                except InvalidEvent:
                    invalid += 1
                seen += 1
        seconds = time.monotonic() - first if first else 0.0
        cpu = time.process_time() - first_cpu if first else 0.0
    finally:
        consumer.close()
    return _figures(CONFLUENT, seen, invalid, seconds, cpu, expected)


async def consume_aiokafka(
    settings: Settings, expected: int, handle: Handler, *, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Read ``expected`` messages of the event topics with aiokafka."""
    record_of = _record_of(settings)
    consumer = AIOKafkaConsumer(
        *record_of,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_wait_ms=max(1, int(settings.batch_within_s * 1000)),
    )
    await consumer.start()
    seen = invalid = 0
    first = first_cpu = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.batch_max)
            if batches and not first:
                first, first_cpu = time.monotonic(), time.process_time()
            for messages in batches.values():
                for msg in messages:
                    try:
                        handle(record_of[msg.topic], msg.value)
                    except InvalidEvent:
                        invalid += 1
                seen += len(messages)
        seconds = time.monotonic() - first if first else 0.0
        cpu = time.process_time() - first_cpu if first else 0.0
    finally:
        await consumer.stop()
    return _figures(AIOKAFKA, seen, invalid, seconds, cpu, expected)


def _figures(
    client: str, seen: int, invalid: int, seconds: float, cpu_s: float, expected: int
) -> dict[str, Any]:
    return {
        "how": HOW[client],
        "events": seen,
        "invalid": invalid,
        "seconds": round(seconds, 3),
        "events_per_s": rate(seen, seconds),
        # the process's CPU time (all its threads, librdkafka's included): what the client
        # costs, which a shared machine's other work does not inflate
        "cpu_seconds": round(cpu_s, 3),
        "events_per_cpu_s": rate(seen, cpu_s),
        "complete": seen >= expected,
    }


def best_client(per_client: Mapping[str, Mapping[str, Any]]) -> tuple[str | None, float | None]:
    """(client, events/s) of the fastest complete run; (None, None) when none completed."""
    done = [
        (figures["events_per_s"], client)
        for client, figures in per_client.items()
        if figures.get("complete") and figures.get("events_per_s")
    ]
    if not done:
        return None, None
    value, client = max(done)
    return client, value


def measure_ceilings(
    settings: Settings, codec: Codec, expected: int, *, rounds: int = 2
) -> dict[str, Any]:
    """``raw_ceiling`` and ``validating_decode`` per client, plus the best raw ceiling; and
    ``consume_only`` (the body not even read), the client alone.

    Each of the four is run ``rounds`` times, the clients' order alternating between rounds;
    a client's figure is its fastest complete run (a ceiling is what the client *can* do on a
    shared machine), and every run's events/s is kept under ``runs``."""
    plain = fastavro_reader(_record_of(settings))
    decode = codec_decoder(codec)
    handlers: dict[str, Handler] = {
        "consume_only": _ignore,
        "raw_ceiling": plain,
        "validating_decode": decode,
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        key: {c: [] for c in CLIENTS} for key in handlers
    }
    for round_no in range(rounds):
        order = CLIENTS if round_no % 2 == 0 else tuple(reversed(CLIENTS))
        for key, handler in handlers.items():
            for client in order:
                if client == CONFLUENT:
                    figures = consume_confluent(settings, expected, handler)
                else:
                    figures = asyncio.run(consume_aiokafka(settings, expected, handler))
                runs[key][client].append(figures)
    out: dict[str, Any] = {}
    for key, per_client in runs.items():
        out[key] = {client: fastest(client_runs) for client, client_runs in per_client.items()}
    best, value = best_client(out["raw_ceiling"])
    out["raw_ceiling"]["best"] = best
    out["raw_ceiling"]["best_events_per_s"] = value
    log.info("ceilings: %s", out)
    return out


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest complete run (else the last), with every run's events/s under ``runs``."""
    complete = [r for r in runs if r.get("complete")]
    chosen = max(complete, key=lambda r: r["events_per_s"]) if complete else runs[-1]
    return {
        **chosen,
        "runs": [r["events_per_s"] for r in runs],
        "runs_per_cpu_s": [r.get("events_per_cpu_s") for r in runs],
    }
