"""The paced load generator, in its own process: ``python -m fangxian.bench.loadgen JOB.json``.

It sends gate scans at a fixed offered rate with confluent-kafka (librdkafka batches and sends
from its own C thread) so the harness's reader and the worker do not share its interpreter.
Each scan gets ``event_id`` = ``UUID(int=base + seq)`` and ``event_time`` = its send time.

It writes ``JOB.json``'s ``out`` file: for each ``seq``, the client-clock send time (ms, taken
just before ``produce``) and the broker's append time of the scan (ms, from the delivery report;
the scan topic uses ``message.timestamp.type=LogAppendTime``, so the broker stamps it), plus
what was sent and how long it took.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fangxian.core.settings import Topics
from fangxian.ingest.produce import LIBRDKAFKA_PARTITIONER, route
from schemas import Codec

log = logging.getLogger(__name__)

TICK_S = 0.002
MAX_BURST = 2_000
#: the last 12 hex digits of an event id carry ``seq`` (``base`` has its low 64 bits zero)
SEQ_HEX = 12


def due_count(elapsed_s: float, rate_per_s: float) -> int:
    """How many messages a paced producer should have sent after ``elapsed_s``."""
    return int(elapsed_s * rate_per_s) if elapsed_s > 0 else 0


def new_base() -> int:
    """A random UUID integer with its low 64 bits free for ``seq``."""
    return uuid.uuid4().int & ~((1 << 64) - 1)


def event_id(base: int, seq: int) -> str:
    return str(uuid.UUID(int=base + seq))


def seq_of(event_id: str, prefix: str) -> int | None:
    """``seq`` of an id made by ``event_id(base, seq)`` whose first 24 characters are
    ``prefix`` (that base); ``None`` for an id of another run."""
    if not event_id.startswith(prefix):
        return None
    return int(event_id[-SEQ_HEX:], 16)


def id_prefix(base: int) -> str:
    return event_id(base, 0)[:24]


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Send the scans the job asks for; the figures ``main`` writes to ``job['out']``."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Producer

    topics = Topics(**job["topics"])
    templates: Sequence[dict[str, Any]] = job["templates"]
    base: int = job["base"]
    rate_per_s: float = job["rate_per_s"]
    duration_s: float = job["duration_s"]
    codec = Codec()
    encode = codec.encode
    sent_ms: list[float] = []
    append_ms: dict[int, int] = {}
    failed = 0
    prefix_len = 11  # marker + fingerprint + the one-byte length of the 36-character event_id

    def delivered(err: Any, msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1
            return
        kind, ts = msg.timestamp()
        if kind == TIMESTAMP_LOG_APPEND_TIME:
            raw = msg.value()[prefix_len : prefix_len + 36].decode()
            append_ms[int(raw[-SEQ_HEX:], 16)] = ts

    producer = Producer(
        {
            "bootstrap.servers": job["bootstrap"],
            "linger.ms": job.get("linger_ms", 1),
            "acks": 1,
            "enable.idempotence": False,
            "queue.buffering.max.messages": 1_000_000,
            "partitioner": LIBRDKAFKA_PARTITIONER,  # a key lands where partition_for puts it
            "on_delivery": delivered,
        }
    )
    producer.list_topics(timeout=30)  # connected before the clock starts
    source = itertools.cycle(templates)
    produce = producer.produce
    sent = 0
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= duration_s:
            break
        burst = min(due_count(elapsed, rate_per_s) - sent, MAX_BURST)
        for _ in range(burst):
            scan = {
                **next(source),
                "event_id": event_id(base, sent),
                "event_time": int(time.time() * 1000),
            }
            topic, key = route(topics, "GateScan", scan)
            value = encode("GateScan", scan)
            sent_ms.append(time.time() * 1000)
            produce(topic, value, key)
            sent += 1
        producer.poll(0)
        time.sleep(TICK_S)
    seconds = time.monotonic() - started
    producer.flush(60)
    return {
        "base": base,
        "sent": sent,
        "seconds": round(seconds, 3),
        "failed": failed,
        "sent_ms": sent_ms,
        "append_ms": [append_ms.get(i) for i in range(sent)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fangxian.bench.loadgen")
    parser.add_argument("job", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    job = json.loads(args.job.read_text(encoding="utf-8"))
    result = run(job)
    Path(job["out"]).write_text(json.dumps(result), encoding="utf-8")
    log.info(
        "loadgen: sent %d in %.1f s (%d failed)",
        result["sent"],
        result["seconds"],
        result["failed"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
