"""The gate edge as its own Kafka principal (``edge``, infra/acl.py) on the SASL/SCRAM broker
with ACLs: it follows gate.decisions and its reference replica, produces what devices sent and
its redacted dead letters, and ``fangxian doctor`` finds it up and connected — and it may do
nothing else. Controls: the same edge logged in as the ``device`` principal never gets to follow
the decisions (so the run works because of the edge's ACLs, not an open broker), and every
denial below has the allowed action beside it, done by the same client."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import TopicAuthorizationFailedError

from fangxian.cli.doctor import OK, Doctor
from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings
from fangxian.edge.register import Register, write_register
from fangxian.edge.service import EdgeConfig, EdgeService
from infra.acl import Principals
from infra.fake_devices import DeviceClient
from infra.kafka_broker import KafkaBroker
from schemas import Codec

ROLES = Principals()
C = "91350100M000100Y43"
KEY = "edge-least-privilege-key"
RESIDENT = "0123456789abcdef0123456789abcdef"  # a resident token, as enrolled on a terminal
DEVICE = {
    "device_id": "api-1",
    "vendor": "generic",
    "community_id": C,
    "gate_id": "east",
    "direction": "IN",
    "serial": "api-1",
    "addresses": ["127.0.0.1"],
}


def _as(broker: KafkaBroker, settings: Settings, role: str) -> Settings:
    return broker.settings_for(getattr(ROLES, role), settings).replace(pseudonym_key=KEY)


def _service(settings: Settings, tmp_path: Path) -> EdgeService:
    register = tmp_path / "devices.register.json"
    write_register([DEVICE], register)
    return EdgeService(
        settings,
        EdgeConfig(port=0, metrics_port=-1, outbox_path=str(tmp_path / "outbox.sqlite")),
        Register.from_file(register, ""),
    )


def _edge_rows(doctor: Doctor) -> dict[str, tuple[str, str]]:
    doctor.edge()
    return {c.name: (c.status, c.result) for c in doctor.checks}


async def _following(service: EdgeService, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reference = service._reference
        if (
            service.kafka_connected.is_set()
            and service.decisions_following.is_set()
            and reference is not None
            and reference.ready.is_set()
        ):
            return True
        await asyncio.sleep(0.1)
    return False


def _values(admin: Settings, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=admin.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        **kafka_client_kwargs(admin),
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([KafkaTopicPartition(topic, p) for p in sorted(parts)])
        return [m.value for m in consumer if m.value]
    finally:
        consumer.close()


def test_the_edge_runs_as_its_own_principal_and_the_doctor_finds_it(
    secure_kafka: KafkaBroker, secure_topics: Settings, tmp_path: Path
) -> None:
    edge = _as(secure_kafka, secure_topics, "edge")

    async def main() -> dict[str, Any]:
        service = _service(edge, tmp_path)
        port = await service.start()
        try:
            assert await _following(service, 60), "the edge did not follow Kafka as `edge`"
            async with DeviceClient(f"http://127.0.0.1:{port}") as client:
                scan = {
                    "device_id": "api-1",
                    "event_serial": "lp-1",
                    "method": "QR",
                    "identifier": f"FX1R:{RESIDENT}:G",
                    "identifier_kind": "qr",
                    "wait": False,
                }
                ok = await client.post("/edge/api/v1/scans", json.dumps(scan).encode(), None)
                bad = await client.post("/edge/api/v1/scans", b'{"scans": [1', None)
            assert (ok.status, bad.status) == (200, 400)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and await asyncio.to_thread(
                service.outbox.depth_and_age
            ) != (0, 0.0):
                await asyncio.sleep(0.2)
            env = {
                "FANGXIAN_EDGE_REGISTER": str(tmp_path / "devices.register.json"),
                "FANGXIAN_EDGE_PORT": str(port),
                "FANGXIAN_EDGE_OUTBOX": str(tmp_path / "outbox.sqlite"),
            }
            rows = await asyncio.to_thread(_edge_rows, Doctor(edge, env=env))
            return {"rows": rows, "depth": await asyncio.to_thread(service.outbox.depth_and_age)}
        finally:
            await service.stop()

    found = asyncio.run(main())
    assert found["depth"] == (0, 0.0)  # Kafka acknowledged everything the edge accepted
    codec = Codec()
    scans = [codec.decode("GateScan", v) for v in _values(secure_topics, edge.topics.gate_scans)]
    assert [s["subject_id"] for s in scans] == [RESIDENT]
    dead = _values(secure_topics, edge.topics.dead_letters)
    assert len(dead) == 1 and codec.decode("DeadLetter", dead[0])["reason"].startswith("edge_")
    assert {name: status for name, (status, _) in found["rows"].items()} == {
        "边缘设备登记 edge register": OK,
        "边缘网关可达 edge reachable": OK,
        "边缘发件箱 edge outbox": OK,
    }


def test_control_the_edge_as_the_device_principal_cannot_follow_decisions(
    secure_kafka: KafkaBroker, secure_topics: Settings, tmp_path: Path
) -> None:
    device = _as(secure_kafka, secure_topics, "device")

    async def main() -> tuple[bool, bool, bool]:
        service = _service(device, tmp_path)
        await service.start()
        try:
            following = await _following(service, 12)
            return following, service.decisions_following.is_set(), service.kafka_connected.is_set()
        finally:
            await service.stop()

    # logged in (its producer connects: the credentials are good), but refused the decisions
    assert asyncio.run(main()) == (False, False, True)


def _produce(settings: Settings, topic: str) -> Any:
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        max_block_ms=10_000,
        enable_idempotence=False,
        **kafka_client_kwargs(settings),
    )
    try:
        return producer.send(topic, b"x", key=b"k").get(timeout=30)
    finally:
        producer.close(timeout=5)


def _fetch(settings: Settings, topic: str) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_client_kwargs(settings),
    )
    try:
        consumer.assign([KafkaTopicPartition(topic, 0)])
        for _ in range(5):
            consumer.poll(timeout_ms=1_000)
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("action", "topic_field", "allowed"),
    [
        pytest.param("write", "gate_scans", True, id="edge writes gate.scans"),
        pytest.param("write", "gate_decisions", False, id="edge cannot forge a decision"),
        pytest.param("write", "residents", False, id="edge cannot change the register"),
        pytest.param("read", "gate_decisions", True, id="edge reads gate.decisions"),
        pytest.param("read", "gate_scans", False, id="edge cannot read other gates' scans"),
        pytest.param("read", "alerts", False, id="edge cannot read alerts"),
    ],
)
def test_the_edge_may_do_what_its_table_says_and_nothing_else(
    secure_kafka: KafkaBroker,
    secure_topics: Settings,
    action: str,
    topic_field: str,
    allowed: bool,
) -> None:
    edge = _as(secure_kafka, secure_topics, "edge")
    topic = getattr(edge.topics, topic_field)
    act = _produce if action == "write" else _fetch
    if allowed:
        act(edge, topic)
    else:
        with pytest.raises(TopicAuthorizationFailedError):
            act(edge, topic)
