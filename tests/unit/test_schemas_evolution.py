"""Schema evolution: other versions of a record, registered by fingerprint, decode as the
current reader schema (Avro schema resolution)."""

from __future__ import annotations

import copy
import io
from typing import Any

import fastavro
import pytest

from schemas import Codec, InvalidEvent, contract
from schemas.codec import MARKER, fingerprint, strip_logical_types

SCAN = contract.named_examples("GateScan")["GateScan.resident_qr"]
ALERT = contract.examples("Alert")[0]
RULES = contract.examples("CommunityRules")[0]


def with_field(name: str, field: dict[str, Any]) -> dict[str, Any]:
    schema = contract.schema(name)
    schema["fields"].append(field)
    return schema


def without_fields(name: str, *dropped: str) -> dict[str, Any]:
    schema = contract.schema(name)
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in dropped]
    return schema


def with_enum_symbol(name: str, field_name: str, symbol: str) -> dict[str, Any]:
    schema = contract.schema(name)
    field = next(f for f in schema["fields"] if f["name"] == field_name)
    field["type"] = copy.deepcopy(field["type"])
    field["type"]["symbols"].append(symbol)
    return schema


def encode_with(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """A single-object message from a producer built against another version of a record."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(strip_logical_types(schema)), datum)
    return MARKER + fingerprint(schema) + body.getvalue()


NEWER_SCAN = with_field(
    "GateScan",
    {"name": "mask_worn", "type": ["null", "boolean"], "default": None, "doc": "added in v1.1"},
)


def test_newer_writer_with_an_extra_field_decodes_once_registered() -> None:
    message = encode_with(NEWER_SCAN, {**SCAN, "mask_worn": True})
    consumer = Codec()
    with pytest.raises(InvalidEvent) as caught:
        consumer.decode("GateScan", message)
    assert caught.value.reason == "unknown_fingerprint"

    consumer.register_writer_schema(NEWER_SCAN)
    assert consumer.decode("GateScan", message) == SCAN  # the extra field is ignored


@pytest.mark.parametrize(
    ("name", "dropped", "datum"),
    [
        pytest.param(
            "GateScan",
            ("health_code", "face_consent"),
            {k: v for k, v in SCAN.items() if k not in ("health_code", "face_consent")},
            id="scan from a device that predates health codes and face consent",
        ),
        pytest.param(
            "CommunityRules",
            ("curfew_start_minute", "curfew_end_minute", "curfew_action"),
            {
                k: v
                for k, v in RULES.items()
                if k not in ("curfew_start_minute", "curfew_end_minute", "curfew_action")
            },
            id="rules written before curfews existed",
        ),
    ],
)
def test_older_writer_without_a_field_gets_the_reader_default(
    name: str, dropped: tuple[str, ...], datum: dict[str, Any]
) -> None:
    older = without_fields(name, *dropped)
    message = encode_with(older, datum)
    consumer = Codec()
    consumer.register_writer_schema(older)
    decoded = consumer.decode(name, message)
    defaults = contract.field_defaults(name)
    assert decoded == {**datum, **{field: defaults[field] for field in dropped}}


def test_new_alert_type_symbol_reads_as_other() -> None:
    newer = with_enum_symbol("Alert", "alert_type", "MASK_MISSING")
    message = encode_with(newer, {**ALERT, "alert_type": "MASK_MISSING"})
    consumer = Codec()
    consumer.register_writer_schema(newer)
    assert consumer.decode("Alert", message) == {**ALERT, "alert_type": "OTHER"}


def test_new_symbol_of_an_enum_without_default_fails_only_where_used() -> None:
    newer = with_enum_symbol("GateScan", "direction", "THROUGH")
    consumer = Codec()
    consumer.register_writer_schema(newer)
    assert consumer.decode("GateScan", encode_with(newer, SCAN)) == SCAN
    with pytest.raises(InvalidEvent) as caught:
        consumer.decode("GateScan", encode_with(newer, {**SCAN, "direction": "THROUGH"}))
    assert caught.value.reason == "schema_mismatch"


INCOMPATIBLE_WRITERS = [
    pytest.param(
        without_fields("GateScan", "gate_id"),
        {k: v for k, v in SCAN.items() if k != "gate_id"},
        id="writer lacks a field the reader needs and has no default for",
    ),
    pytest.param(
        {
            **contract.schema("GateScan"),
            "fields": [
                {**f, "type": "long"} if f["name"] == "gate_id" else f
                for f in contract.schema("GateScan")["fields"]
            ],
        },
        {**SCAN, "gate_id": 7},
        id="field type changed from string to long",
    ),
]


@pytest.mark.parametrize(("writer_schema", "datum"), INCOMPATIBLE_WRITERS)
def test_incompatible_writer_is_a_schema_mismatch(
    writer_schema: dict[str, Any], datum: dict[str, Any]
) -> None:
    message = encode_with(writer_schema, datum)
    consumer = Codec()
    consumer.register_writer_schema(writer_schema)
    with pytest.raises(InvalidEvent) as caught:
        consumer.decode("GateScan", message)
    assert caught.value.reason == "schema_mismatch"
    assert "GateScan" in caught.value.detail


def test_registered_version_of_another_record_is_still_the_wrong_record() -> None:
    newer_reading = with_field(
        "TemperatureReading", {"name": "battery", "type": ["null", "int"], "default": None}
    )
    consumer = Codec()
    consumer.register_writer_schema(newer_reading)
    message = encode_with(newer_reading, contract.examples("TemperatureReading")[0])
    assert consumer.decode("TemperatureReading", message)["device_id"]
    with pytest.raises(InvalidEvent) as caught:
        consumer.decode("GateScan", message)
    assert caught.value.reason == "wrong_record"


def test_registering_is_idempotent_and_returns_the_fingerprint() -> None:
    consumer = Codec()
    first = consumer.register_writer_schema(NEWER_SCAN)
    assert consumer.register_writer_schema(NEWER_SCAN) == first == fingerprint(NEWER_SCAN)
    assert consumer.register_writer_schema(contract.schema("GateScan")) == consumer.fingerprint(
        "GateScan"
    )


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "enum", "name": "Direction", "symbols": ["IN"]}, id="not a record"),
        pytest.param({"type": "record", "name": "X", "fields": [{"name": "a"}]}, id="no type"),
        pytest.param(
            {"type": "record", "name": "X", "fields": [{"name": "a", "type": "Nope"}]},
            id="unknown named type",
        ),
    ],
)
def test_registering_a_broken_schema_is_a_value_error(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Codec().register_writer_schema(schema)


def test_logical_types_in_a_registered_schema_do_not_matter() -> None:
    plain = copy.deepcopy(NEWER_SCAN)
    for f in plain["fields"]:
        if f["name"] == "event_time":
            f["type"] = "long"
    consumer = Codec()
    assert consumer.register_writer_schema(plain) == consumer.register_writer_schema(NEWER_SCAN)
