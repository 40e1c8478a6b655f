"""Alert-to-first-message latency of the on-duty dispatcher at an offered alert rate.

``python -m fangxian.bench.dispatch [--bootstrap HOST:PORT] [--rate 100] [--seconds 20]``
(without ``--bootstrap`` it starts and stops its own Kafka broker). It creates topics with a
fresh prefix, loads a one-person roster, starts the dispatcher in-process with one channel —
the generic webhook to the loopback fake receiver, because a real group robot takes 20
messages a minute and at 100 alerts/s the robot's rate limit, not the dispatcher, would be the
figure — produces CRITICAL alerts (never grouped) at the offered rate, and measures, per alert,
the wall time from handing it to the producer to the receiver's arrival. Prints JSON with
p50/p95/p99/max in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from fangxian.bench.stats import latency_summary
from fangxian.core.settings import Settings, Topics
from infra.fake_bots import FakeBots
from infra.ports import free_port
from infra.topics import create_topics, topic_specs
from schemas import Codec
from sinks.channels.webhook import JsonWebhook
from streams.dispatch.contacts import ContactBox, Contacts
from streams.dispatch.stage import DispatcherStage

COMMUNITY = "91350100M000100Y43"
BENCH_KEY = "bench-only-roster-key"


async def _load_roster(settings: Settings, producer: AIOKafkaProducer, codec: Codec) -> None:
    box = ContactBox(settings.roster_key)
    staff = {
        "staff_id": "bench-guard",
        "community_id": COMMUNITY,
        "display_name": "基准 值班",
        "role": "GATE_GUARD",
        "contacts": box.seal(Contacts(phone="13800000001"), "bench-guard", COMMUNITY),
    }
    shift = {
        "shift_id": "bench-all-day",
        "community_id": COMMUNITY,
        "staff_id": "bench-guard",
        "start_minute": 0,
        "end_minute": 0,
    }
    policy = {
        "community_id": COMMUNITY,
        "steps": [{"level": 1, "after_s": 0, "channels": ["webhook:bench"]}],
        "repeat_interval_s": 0,
    }
    t = settings.topics
    await producer.send_and_wait(t.staff, codec.encode("StaffMember", staff), key=b"bench-guard")
    await producer.send_and_wait(t.duty, codec.encode("DutyShift", shift), key=b"bench-all-day")
    await producer.send_and_wait(
        t.escalation, codec.encode("EscalationPolicy", policy), key=COMMUNITY.encode()
    )


async def measure(bootstrap: str, *, rate: float = 100.0, seconds: float = 20.0) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    port = free_port()
    settings = Settings(
        kafka_bootstrap=bootstrap,
        app_id=f"fangxian-{prefix[:-1]}",
        topics=Topics().with_prefix(prefix),
        event_partitions=3,
        reference_partitions=1,
        roster_key=BENCH_KEY,
        ack_link_key="bench-only-ack-key",
        ack_port=port,
        ack_base_url=f"http://127.0.0.1:{port}",
        dispatch_tick_s=0.02,
    )
    await asyncio.to_thread(create_topics, bootstrap, topic_specs(settings))
    bots = await FakeBots().start()
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    stage = DispatcherStage(
        settings, {"webhook:bench": JsonWebhook("webhook:bench", bots.webhook_url(), "hook-secret")}
    )
    sent_at: dict[str, float] = {}
    try:
        await _load_roster(settings, producer, codec)
        await stage.start()
        runner = asyncio.create_task(stage.run())
        await asyncio.wait_for(stage.ready.wait(), 120)
        total = int(rate * seconds)
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            alert_id = str(uuid.uuid4())
            now_ms = int(time.time() * 1000)
            alert = {
                "alert_id": alert_id,
                "alert_type": "FEVER_CONFIRMED",
                "severity": "CRITICAL",
                "community_id": COMMUNITY,
                "gate_id": f"gate-{i % 20}",
                "message_zh": "基准测试",
                "message_en": f"bench {alert_id}",
                "event_time": now_ms,
                "created_at": now_ms,
            }
            sent_at[alert_id] = time.time()
            await producer.send(
                settings.topics.alerts, codec.encode("Alert", alert), key=COMMUNITY.encode()
            )
        offered_s = time.monotonic() - start
        deadline = time.monotonic() + 60
        while len(bots.of_kind("webhook")) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        runner.cancel()
    finally:
        await stage.stop()
        await producer.stop()
        await bots.stop()
    latencies = []
    for item in bots.of_kind("webhook"):
        alert_id = item.payload["lines"][1].removeprefix("bench ")
        if alert_id in sent_at:
            latencies.append((item.at - sent_at[alert_id]) * 1000)
    return {
        "what": "alert produced → first message at the receiver (generic webhook), CRITICAL",
        "offered_rate_per_s": rate,
        "offered_s": round(offered_s, 2),
        "alerts": len(sent_at),
        "delivered": len(latencies),
        **latency_summary(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="a running Kafka broker (else one is started)")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.bootstrap:
        result = asyncio.run(measure(args.bootstrap, rate=args.rate, seconds=args.seconds))
    else:
        from infra.kafka_broker import KafkaBroker

        with KafkaBroker() as broker:
            result = asyncio.run(measure(broker.bootstrap, rate=args.rate, seconds=args.seconds))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
