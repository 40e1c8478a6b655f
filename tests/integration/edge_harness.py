"""The gate edge against the real broker: reference data, an optional real decide stage
(``streams.runtime.DecideRuntime``), the edge service, fake devices, and readers of what
reached Kafka. Shared by tests/integration/test_edge_*.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from fangxian.core.privacy import Pseudonymiser
from fangxian.core.settings import Settings
from fangxian.edge.register import DeviceEntry, Register
from fangxian.edge.service import EdgeConfig, EdgeService
from fangxian.ingest.produce import RecordProducer
from infra.fake_devices import DeviceClient, FakeHikvisionTerminal
from schemas import Codec, contract
from streams.runtime import DecideRuntime

C = "91350100M000100Y43"
KEY = "edge-integration-key"
P = Pseudonymiser.from_text(KEY)
RESIDENT = P.token("resident", "11010519491231002X")
REG_PLATE = "闽A12345"
UNREG_PLATE = "闽B54321"
EXPIRED_PASS = "00077"
PATH_SECRET = "cam-secret-0123456789abcdef"
HIK_TIMEOUT_MS = 2500
PLATE_TIMEOUT_MS = 1500
QR_TIMEOUT_MS = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def reference_records(now: int) -> list[tuple[str, dict[str, Any]]]:
    rules = dict(contract.named_examples("CommunityRules")["CommunityRules"])
    rules.update(
        community_id=C,
        entry_limit_scope="NONE",
        curfew_start_minute=None,
        curfew_end_minute=None,
        updated_at=now,
    )
    resident = dict(contract.named_examples("Resident")["Resident.normal"])
    resident.update(resident_id=RESIDENT, community_id=C, face_consent=True, updated_at=now)
    vehicle = dict(contract.named_examples("Vehicle")["Vehicle"])
    vehicle.update(
        vehicle_id=P.token("plate", REG_PLATE),
        community_id=C,
        owner_resident_id=RESIDENT,
        valid_until=None,
        updated_at=now,
    )
    visitor = dict(contract.named_examples("VisitorPass")["VisitorPass"])
    visitor.update(
        pass_id=P.token("pass", C + EXPIRED_PASS),
        community_id=C,
        host_resident_id=RESIDENT,
        valid_from=now - 3 * 86_400_000,
        valid_until=now - 86_400_000,
        revoked=False,
        updated_at=now,
    )
    return [
        ("CommunityRules", rules),
        ("Resident", resident),
        ("Vehicle", vehicle),
        ("VisitorPass", visitor),
    ]


def register(terminal_port: int) -> Register:
    common: dict[str, Any] = dict(community_id=C, direction="IN")
    return Register(
        [
            DeviceEntry(
                "hik-1",
                "hikvision",
                gate_id="east",
                mac="aa:bb:cc:dd:ee:01",
                timeout_ms=HIK_TIMEOUT_MS,
                addresses=("127.0.0.1",),
                auth="digest",
                username="edge",
                password="edge-pass",
                callback_url=f"http://127.0.0.1:{terminal_port}",
                callback_username="admin",
                callback_password="terminal-pass",
                **common,
            ),
            DeviceEntry(
                "cam-1",
                "plate",
                gate_id="car",
                serial="CAM0001",
                timeout_ms=PLATE_TIMEOUT_MS,
                auth="path",
                password=PATH_SECRET,
                **common,
            ),
            DeviceEntry(
                "qr-1",
                "qr",
                gate_id="east",
                device_number="R-01",
                timeout_ms=QR_TIMEOUT_MS,
                addresses=("127.0.0.1",),
                **common,
            ),
            DeviceEntry(
                "api-1",
                "generic",
                gate_id="east",
                serial="api-1",
                auth="basic",
                username="api",
                password="api-pass",
                timeout_ms=QR_TIMEOUT_MS,
                **common,
            ),
        ]
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class EdgeEnv:
    settings: Settings
    service: EdgeService
    client: DeviceClient
    terminal: FakeHikvisionTerminal
    log: _Collect
    decide: DecideRuntime | None = None
    decide_task: asyncio.Task[None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fallbacks(self) -> float:
        return sum(
            s.value
            for m in self.service.metrics.fallback_answers.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )

    async def start_decide(self) -> None:
        self.decide = DecideRuntime(self.settings)
        await self.decide.start()
        self.decide_task = asyncio.create_task(self.decide.run())

    async def stop_decide(self) -> None:
        if self.decide is not None:
            await self.decide.stop()
        if self.decide_task is not None:
            self.decide_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.decide_task
        self.decide = self.decide_task = None


@contextlib.asynccontextmanager
async def edge_env(
    topics: Settings, tmp_path: Path, *, decide: bool, **config: Any
) -> AsyncIterator[EdgeEnv]:
    settings = dataclasses.replace(topics, pseudonym_key=KEY)
    producer = RecordProducer(settings)
    for name, record in reference_records(now_ms()):
        producer.send(name, record)
    producer.close()
    terminal = FakeHikvisionTerminal()
    await terminal.start()
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    env: EdgeEnv | None = None
    service = EdgeService(
        settings,
        EdgeConfig(
            port=0,
            metrics_port=-1,
            outbox_path=str(tmp_path / "outbox.sqlite"),
            answer_margin_ms=200,
            **config,
        ),
        register(terminal.port),
    )
    try:
        await service.start()
        deadline = time.monotonic() + 30
        while not (
            service.kafka_connected.is_set()
            and service.decisions_following.is_set()
            and service._reference is not None
            and service._reference.ready.is_set()
        ):
            assert time.monotonic() < deadline, "edge did not connect to Kafka in 30 s"
            await asyncio.sleep(0.05)
        async with DeviceClient(f"http://127.0.0.1:{service.port}") as client:
            env = EdgeEnv(settings, service, client, terminal, handler)
            if decide:
                await env.start_decide()
            yield env
    finally:
        if env is not None:
            await env.stop_decide()
        await service.stop()
        await terminal.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 5.0) -> list[Any]:
    """Every message on ``topic`` (read_uncommitted: what any reader could see), to its end."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def decoded(bootstrap: str, topic: str, record_name: str) -> list[dict[str, Any]]:
    codec = Codec()
    out = []
    for msg in read_topic(bootstrap, topic):
        if msg.value is not None:
            with contextlib.suppress(Exception):
                out.append(codec.decode(record_name, msg.value))
    return out


async def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.3)
