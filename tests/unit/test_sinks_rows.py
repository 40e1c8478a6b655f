"""sinks.rows: contract event dicts become one list per column, in contract order."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import contract
from sinks import rows
from sinks.errors import SinkError
from sinks.rows import INGESTED_AT, TABLE_OF_RECORD, Kind

# What each Avro type is stored as (after the ["null", T] union is unwrapped).
KIND_OF_AVRO = {
    "string": Kind.STRING,
    "enum": Kind.STRING,
    "timestamp-millis": Kind.TIMESTAMP_MS,
    "date": Kind.DATE_DAYS,
    "double": Kind.FLOAT,
    "float": Kind.FLOAT,
    "int": Kind.INT32,
    "long": Kind.INT64,
    "boolean": Kind.BOOL,
    "array": Kind.STRINGS,
    "map": Kind.STRING_MAP,
    "bytes": Kind.BYTES,
}


def _avro_kind(type_: Any) -> tuple[str, bool]:
    """(type name, nullable) of an Avro field type."""
    nullable = isinstance(type_, list) and "null" in type_
    if isinstance(type_, list):
        (type_,) = [t for t in type_ if t != "null"]
    if isinstance(type_, dict):
        return type_.get("logicalType") or type_["type"], nullable
    return type_, nullable


@pytest.mark.parametrize("record", sorted(TABLE_OF_RECORD))
def test_every_contract_field_is_a_column_of_the_same_name_kind_and_nullability(
    record: str,
) -> None:
    fields = contract.schema(record)["fields"]
    columns = rows.columns_of(TABLE_OF_RECORD[record])
    assert [c.name for c in columns] == [f["name"] for f in fields]
    for column, field in zip(columns, fields, strict=True):
        avro_type, nullable = _avro_kind(field["type"])
        assert (column.kind, column.nullable) == (KIND_OF_AVRO[avro_type], nullable), column.name


@pytest.mark.parametrize("record", sorted(TABLE_OF_RECORD))
def test_contract_defaults_fill_missing_keys(record: str) -> None:
    defaults = contract.field_defaults(record)
    columns = {c.name: c for c in rows.columns_of(TABLE_OF_RECORD[record])}
    for name, default in defaults.items():
        stored = columns[name].default
        assert (list(stored) if isinstance(stored, tuple) else stored) == default, name


def test_stored_columns_are_the_contract_fields_then_ingested_at() -> None:
    names = rows.column_names("gate_decisions")
    assert names[-1] == INGESTED_AT
    assert names[:-1] == tuple(f["name"] for f in contract.schema("GateDecision")["fields"])


SCAN = {
    "event_id": "e1",
    "community_id": "91350100M000100Y43",
    "gate_id": "east",
    "device_id": "qr-1",
    "direction": "IN",
    "subject_type": "RESIDENT",
    "subject_id": "tok",
    "household_id": None,
    "method": "QR",
    "health_code": "GREEN",
    "face_consent": True,
    "temperature_c": 36.6,
    "event_time": 1_581_726_600_123,
}


@pytest.mark.parametrize(
    ("table", "events", "column", "expected"),
    [
        pytest.param(
            "gate_scans", [SCAN], "event_time", [1_581_726_600_123], id="epoch ms stays an int"
        ),
        pytest.param("gate_scans", [SCAN], "household_id", [None], id="null stays None"),
        pytest.param(
            "gate_scans",
            [{k: v for k, v in SCAN.items() if k not in ("health_code", "face_consent")}],
            "health_code",
            ["UNKNOWN"],
            id="a missing health_code takes the contract default UNKNOWN",
        ),
        pytest.param(
            "gate_scans",
            [{k: v for k, v in SCAN.items() if k != "face_consent"}],
            "face_consent",
            [False],
            id="a missing face_consent takes the contract default false",
        ),
        pytest.param(
            "gate_scans",
            [SCAN, {**SCAN, "event_id": "e2", "direction": "OUT"}],
            "direction",
            ["IN", "OUT"],
            id="one value per row in row order",
        ),
        pytest.param(
            "health_reports",
            [{"report_date": 18307, "symptoms": ["FEVER"]}],
            "report_date",
            [18307],
            id="a date stays int days",
        ),
        pytest.param(
            "dead_letters",
            [{"original": b"\xc3\x01\xff"}],
            "original",
            [b"\xc3\x01\xff"],
            id="original stays raw bytes",
        ),
        pytest.param("alerts", [{}], "details", [{}], id="a missing details map is empty"),
        pytest.param("gate_scans", [], "event_id", [], id="no rows gives empty columns"),
    ],
)
def test_to_columns(
    table: str, events: list[dict[str, Any]], column: str, expected: list[Any]
) -> None:
    columns = rows.to_columns(table, events)
    assert list(columns) == [c.name for c in rows.columns_of(table)]
    assert columns[column] == expected


def test_rows_stamped_with_ingested_at_carry_it_as_a_column() -> None:
    stamped = rows.to_columns("gate_scans", [{**SCAN, "ingested_at": 1_700_000_000_123}])
    assert list(stamped) == list(rows.column_names("gate_scans"))
    assert stamped["ingested_at"] == [1_700_000_000_123]
    assert "ingested_at" not in rows.to_columns("gate_scans", [SCAN])  # left to the database


def test_an_unknown_table_is_a_sink_error_not_a_data_error() -> None:
    with pytest.raises(SinkError, match="not a contract table") as caught:
        rows.to_columns("gate_scan", [SCAN])
    assert type(caught.value) is rows.UnknownTable
