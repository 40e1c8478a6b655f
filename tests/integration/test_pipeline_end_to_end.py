"""Devices → real Kafka → worker → ClickHouse rows, with every field intact; bad input →
dead letters; the worker keeps going. Runs against chdb and the ClickHouse server."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from kafka import KafkaConsumer

from fangxian.core.settings import Settings
from fangxian.ingest.produce import RecordProducer
from schemas import Codec
from schemas.codec import MARKER
from schemas.topics import EVENT_TABLES
from sinks import open_writer
from sinks.readback import read_contract_rows
from tests.integration.pipeline_harness import fresh_example, rows_written, run_pipeline_until


@pytest.fixture(params=["chdb", "server"])
def pipeline_settings(request: pytest.FixtureRequest, topics: Settings) -> Settings:
    url = (
        request.getfixturevalue("chdb_url")
        if request.param == "chdb"
        else request.getfixturevalue("clickhouse_url")
    )
    return topics.replace(clickhouse_url=url, sink_flush_s=0.3)


def _events() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("GateScan", fresh_example("GateScan", "resident_qr")),
        ("GateScan", fresh_example("GateScan", "vehicle")),
        ("GateScan", fresh_example("GateScan", "visitor")),
        ("TemperatureReading", fresh_example("TemperatureReading")),
        ("TemperatureReading", fresh_example("TemperatureReading", "handheld")),
        ("HealthReport", fresh_example("HealthReport")),
        ("HealthReport", fresh_example("HealthReport", "well")),
    ]


def test_events_arrive_as_rows_with_every_field_intact(pipeline_settings: Settings) -> None:
    events = _events()
    producer = RecordProducer(pipeline_settings)
    for name, event in events:
        producer.send(name, event)
    producer.close()
    expected = {t: [e for n, e in events if EVENT_TABLES[n] == t] for t in EVENT_TABLES.values()}

    def done(runtime: Any, run: Any) -> bool:
        return all(rows_written(runtime, t) >= len(rows) for t, rows in expected.items())

    _runtime, _run = asyncio.run(run_pipeline_until(pipeline_settings, done))
    writer = open_writer(pipeline_settings.clickhouse_url)
    try:
        for table, sent in expected.items():
            stored = {r["event_id"]: r for r in read_contract_rows(writer, table)}
            assert len(stored) == len(sent)
            for event in sent:
                row = stored[event["event_id"]]
                assert {k: row[k] for k in event} == event, table
        # every scan got exactly one decision, stored and produced
        decisions = read_contract_rows(writer, "gate_decisions")
        scan_ids = sorted(e["event_id"] for n, e in events if n == "GateScan")
        assert sorted(d["event_id"] for d in decisions) == scan_ids
    finally:
        writer.close()


BAD_INPUT = [
    pytest.param(b"garbage bytes", "bad_marker", id="garbage bytes"),
    pytest.param(b"\xc3\x02" + b"\0" * 20, "bad_marker", id="wrong marker"),
    pytest.param(
        MARKER + struct.pack("<q", 12345) + b"\x02ab",
        "unknown_fingerprint",
        id="unknown fingerprint",
    ),
    pytest.param("truncated", "truncated", id="truncated body"),
    pytest.param("non_uuid", "invalid_value", id="non-UUID event_id"),
    pytest.param("nan", "invalid_value", id="NaN temperature"),
]


def _bad_payload(kind: bytes | str, codec: Codec) -> tuple[str, bytes]:
    if isinstance(kind, bytes):
        return "gate_scans", kind
    if kind == "truncated":
        return "gate_scans", codec.encode("GateScan", fresh_example("GateScan", "resident_qr"))[:-9]
    # schema-valid but invalid values: encode with the raw fastavro path, bypassing validation
    import io

    import fastavro

    from schemas.codec import strip_logical_types

    if kind == "non_uuid":
        name, topic, record = (
            "GateScan",
            "gate_scans",
            fresh_example("GateScan", "resident_qr", event_id="not-a-uuid"),
        )
    else:
        name, topic, record = (
            "TemperatureReading",
            "temperature_readings",
            fresh_example("TemperatureReading", temperature_c=float("nan")),
        )
    schema = fastavro.parse_schema(strip_logical_types(codec_schema(name)))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, record)
    return topic, MARKER + codec.fingerprint(name) + body.getvalue()


def codec_schema(name: str) -> dict[str, Any]:
    from schemas import contract

    return contract.schema(name)


@pytest.mark.parametrize(("kind", "reason"), BAD_INPUT)
def test_bad_input_is_dead_lettered_and_the_worker_keeps_going(
    topics: Settings, chdb_url: str, kind: bytes | str, reason: str
) -> None:
    settings = topics.replace(clickhouse_url=chdb_url, sink_flush_s=0.3)
    codec = Codec()
    attr, payload = _bad_payload(kind, codec)
    topic = getattr(settings.topics, attr)
    good = fresh_example("GateScan", "resident_qr")
    producer = RecordProducer(settings)
    producer.send_raw(topic, payload, key=b"k")
    producer.send("GateScan", good)  # after the bad one: proves the worker went on
    producer.close()

    def done(runtime: Any, run: Any) -> bool:
        return (
            rows_written(runtime, "dead_letters") >= 1 and rows_written(runtime, "gate_scans") >= 1
        )

    asyncio.run(run_pipeline_until(settings, done))

    consumer = KafkaConsumer(
        settings.topics.dead_letters,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    letters = [codec.decode("DeadLetter", m.value) for m in consumer]
    consumer.close()
    assert len(letters) == 1
    letter = letters[0]
    assert letter["reason"] == reason
    assert letter["original"] == payload
    assert letter["source_topic"] == topic
    assert letter["source_offset"] == 0
    writer = open_writer(chdb_url)
    try:
        stored = read_contract_rows(writer, "dead_letters")
        assert [(r["reason"], r["original"]) for r in stored] == [(reason, payload)]
        assert [r["event_id"] for r in read_contract_rows(writer, "gate_scans")] == [
            good["event_id"]
        ]
    finally:
        writer.close()
