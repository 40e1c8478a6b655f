"""The decide and sink stages run end to end on the SASL/SCRAM broker with ACLs, each as its own
principal (infra/acl.py): a device publishes scans, decide answers them, sink stores them.

Control: the same decide stage with the *device* principal is refused — so the run above works
because of the decide principal's ACLs, not because the broker lets anyone in."""

from __future__ import annotations

import asyncio
import time

import pytest

from fangxian.core.settings import Settings
from fangxian.ingest.produce import RecordProducer
from infra.acl import Principals
from infra.kafka_broker import KafkaBroker
from streams.runtime import DecideRuntime, SinkRuntime
from tests.integration.pipeline_harness import fresh_example

ROLES = Principals()
SCANS = 6


def as_role(broker: KafkaBroker, settings: Settings, role: str) -> Settings:
    return broker.settings_for(getattr(ROLES, role), settings)


async def _run_until_stored(decide: DecideRuntime, sink: SinkRuntime, timeout_s: float) -> int:
    await decide.start()
    await sink.start()
    tasks = [asyncio.create_task(decide.run()), asyncio.create_task(sink.run())]
    stored = 0
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for task in tasks:
                if task.done():
                    task.result()  # a stage that died says why
            [(stored,)] = sink.writer.query(
                f"SELECT uniqExact(event_id) FROM {sink.writer.database}.gate_decisions"
            )
            if stored >= SCANS:
                break
            await asyncio.sleep(0.5)
    finally:
        await decide.stop()
        await sink.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return int(stored)


def test_the_stages_run_end_to_end_under_their_own_principals(
    secure_kafka: KafkaBroker, secure_topics: Settings, tmp_path: pytest.TempPathFactory
) -> None:
    device = RecordProducer(as_role(secure_kafka, secure_topics, "device"), acks="all")
    scans = [fresh_example("GateScan", "resident_qr") for _ in range(SCANS)]
    for scan in scans:
        device.send("GateScan", scan)
    device.close()

    decide = DecideRuntime(as_role(secure_kafka, secure_topics, "decide"))
    sink_settings = as_role(secure_kafka, secure_topics, "sink").replace(
        clickhouse_url=f"chdb://{tmp_path}/chdb"
    )
    sink = SinkRuntime(sink_settings)
    stored = asyncio.run(_run_until_stored(decide, sink, timeout_s=90))
    assert stored == SCANS, "every scan a device sent was decided and stored"


def test_control_the_decide_stage_as_a_device_is_refused(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    decide = DecideRuntime(as_role(secure_kafka, secure_topics, "device"))

    async def start() -> None:
        try:
            await asyncio.wait_for(decide.start(), timeout=60)
        finally:
            await decide.stop()

    with pytest.raises(Exception) as refused:
        asyncio.run(start())
    # the device may not read reference data: the broker hides those topics from it (or refuses
    # the read outright), and the stage refuses to start without them
    text = f"{type(refused.value).__name__}: {refused.value}"
    assert "uthoriz" in text or "reference topics not found" in text
