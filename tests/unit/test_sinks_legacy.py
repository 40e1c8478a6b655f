"""sinks.legacy: modern DDL rewritten for an old server, and rows shaped for its columns."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from schemas import contract
from sinks.base import parse_version
from sinks.errors import SinkError
from sinks.legacy import adapt_for_legacy, encode_for_server, is_legacy, supports
from sinks.migrate import load_migrations, render, split_statements
from sinks.rows import TABLES

OLD = (18, 16, 1)
NEW = (26, 9, 2, 1)


@pytest.mark.parametrize(
    ("sql", "version", "expected"),
    [
        pytest.param(
            "    gate_id LowCardinality(String),",
            OLD,
            "    gate_id String,",
            id="LowCardinality is dropped on 18.16",
        ),
        pytest.param(
            "    gate_id LowCardinality(Nullable(String)),",
            OLD,
            "    gate_id Nullable(String),",
            id="LowCardinality around Nullable keeps the Nullable",
        ),
        pytest.param(
            "    symptoms Array(LowCardinality(String)),",
            OLD,
            "    symptoms Array(String),",
            id="LowCardinality inside an Array",
        ),
        pytest.param(
            "ORDER BY x\nTTL toDateTime(event_time) + INTERVAL 90 DAY",
            OLD,
            "ORDER BY x",
            id="TTL line is dropped before 19.6",
        ),
        pytest.param(
            "ORDER BY x\nTTL toDateTime(event_time) + INTERVAL 90 DAY",
            (19, 6),
            "ORDER BY x\nTTL toDateTime(event_time) + INTERVAL 90 DAY",
            id="TTL is kept from 19.6",
        ),
        pytest.param(
            "    event_time DateTime64(3, 'UTC'),",
            OLD,
            "    event_time DateTime('UTC'),\n    event_time_ms UInt16 DEFAULT 0,",
            id="DateTime64 becomes DateTime plus a milliseconds column",
        ),
        pytest.param(
            "    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)\n)",
            OLD,
            "    ingested_at DateTime('UTC') DEFAULT now(),\n"
            "    ingested_at_ms UInt16 DEFAULT 0\n)",
            id="the last column keeps no trailing comma and now64 becomes now",
        ),
        pytest.param(
            "    details Map(String, String),",
            OLD,
            "    details Nested(key String, value String),",
            id="Map becomes Nested key/value arrays before 21.8",
        ),
        pytest.param(
            "    details Map(String, String),",
            (21, 8),
            "    details Map(String, String),",
            id="Map is kept from 21.8",
        ),
        pytest.param(
            "toDate(details['date']) AS d",
            OLD,
            "toDate(details.value[indexOf(details.key, 'date')]) AS d",
            id="a Map subscript reads the Nested arrays before 21.8",
        ),
        pytest.param(
            "if(empty(reasons), ['NONE'], reasons)",
            OLD,
            "if(empty(reasons), ['NONE'], reasons)",
            id="an array literal is not a Map subscript",
        ),
        pytest.param(
            "toDate(details['date']) AS d",
            (21, 8),
            "toDate(details['date']) AS d",
            id="a Map subscript is kept from 21.8",
        ),
        pytest.param(
            "ORDER BY x\nSETTINGS non_replicated_deduplication_window = 1000",
            OLD,
            "ORDER BY x",
            id="the dedup window setting is dropped before 20.10",
        ),
        pytest.param(
            "    face_consent Bool,", OLD, "    face_consent UInt8,", id="Bool becomes UInt8"
        ),
        pytest.param(
            "    event_time DateTime64(3, 'UTC'),\n    face_consent Bool,",
            (20, 3),
            "    event_time DateTime64(3, 'UTC'),\n    face_consent UInt8,",
            id="a 20.3 server gets only the rewrites it needs",
        ),
    ],
)
def test_adapt_for_legacy(sql: str, version: tuple[int, ...], expected: str) -> None:
    assert adapt_for_legacy(sql, version) == expected


def _statements() -> list[str]:
    return [
        render(statement, database="fx", retention_days=90)
        for migration in load_migrations()
        for statement in split_statements(migration.sql)
    ]


@pytest.mark.parametrize("statement", _statements(), ids=lambda s: s.split("(")[0][27:].strip())
def test_on_a_current_server_the_ddl_is_unchanged(statement: str) -> None:
    assert adapt_for_legacy(statement, NEW) == statement


@pytest.mark.parametrize("statement", _statements(), ids=lambda s: s.split("(")[0][27:].strip())
def test_on_18_16_no_modern_construct_survives(statement: str) -> None:
    adapted = adapt_for_legacy(statement, OLD)
    for modern in ("DateTime64", "now64", "TTL ", "LowCardinality", "Map(", "Bool", "SETTINGS"):
        assert modern not in adapted
    if not any(statement.startswith(f"CREATE TABLE IF NOT EXISTS fx.{t}\n") for t in TABLES):
        return  # roll-up tables and BI views keep plain DateTime columns, no _ms sibling
    datetime_columns = re.findall(r"^\s*(\w+) DateTime\('UTC'\)", adapted, flags=re.M)
    ms_columns = re.findall(r"^\s*(\w+)_ms UInt16", adapted, flags=re.M)
    assert datetime_columns == ms_columns


# Enum8 columns and the contract enum they store.
ENUM_COLUMNS = {
    "direction": "Direction",
    "subject_type": "SubjectType",
    "method": "ScanMethod",
    "health_code": "HealthCode",
    "sensor": "Sensor",
    "decision": "Decision",
    "severity": "Severity",
}


@pytest.mark.parametrize(("column", "enum"), sorted(ENUM_COLUMNS.items()))
def test_enum8_columns_list_exactly_the_contract_symbols(column: str, enum: str) -> None:
    ddl = "\n".join(m.sql for m in load_migrations())
    found = re.findall(rf"^\s*{column} Enum8\((.*)\),$", ddl, flags=re.M)
    assert found
    for values in found:
        assert tuple(re.findall(r"'(\w+)' = \d+", values)) == contract.enum_symbols(enum)


@pytest.mark.parametrize(
    ("version", "legacy"),
    [
        pytest.param((18, 16, 1), True, id="18.16 is legacy"),
        pytest.param((21, 8, 15), True, id="21.8 still lacks Bool"),
        pytest.param((21, 12), False, id="21.12 has everything"),
        pytest.param((26, 9, 2, 1), False, id="current"),
    ],
)
def test_is_legacy(version: tuple[int, ...], legacy: bool) -> None:
    assert is_legacy(version) is legacy


def test_supports_names_a_feature_and_rejects_an_unknown_one() -> None:
    assert supports((20, 1), "DateTime64") and not supports((19, 17), "DateTime64")
    with pytest.raises(KeyError):
        supports(NEW, "Teleport")


LEGACY_DESCRIBED = [
    ("event_id", "String"),
    ("event_time", "DateTime('UTC')"),
    ("event_time_ms", "UInt16"),
    ("report_date", "Date"),
    ("details.key", "Array(String)"),
    ("details.value", "Array(String)"),
    ("ingested_at", "DateTime('UTC')"),
    ("ingested_at_ms", "UInt16"),
]
MODERN_DESCRIBED = [
    ("event_id", "String"),
    ("event_time", "DateTime64(3, 'UTC')"),
    ("report_date", "Date"),
    ("details", "Map(String, String)"),
    ("ingested_at", "DateTime64(3, 'UTC')"),
]
COLUMNS: dict[str, list[Any]] = {
    "event_id": ["a", "b"],
    "event_time": [1_581_726_600_123, 1_581_726_601_000],
    "report_date": [18307, 0],
    "details": [{"k": "v", "k2": "v2"}, {}],
}


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        pytest.param(
            LEGACY_DESCRIBED,
            {
                "event_id": ["a", "b"],
                "event_time": [1_581_726_600, 1_581_726_601],
                "event_time_ms": [123, 0],
                "report_date": [date(2020, 2, 15), date(1970, 1, 1)],
                "details.key": [["k", "k2"], []],
                "details.value": [["v", "v2"], []],
            },
            id="18.16: seconds plus ms, dates, maps as two arrays, ingested_at left to default",
        ),
        pytest.param(
            MODERN_DESCRIBED,
            {
                "event_id": ["a", "b"],
                "event_time": [1_581_726_600_123, 1_581_726_601_000],
                "report_date": [date(2020, 2, 15), date(1970, 1, 1)],
                "details": [{"k": "v", "k2": "v2"}, {}],
            },
            id="current: epoch ms as DateTime64(3) raw ints, maps as dicts",
        ),
    ],
)
def test_encode_for_server(described: list[tuple[str, str]], expected: dict[str, list]) -> None:
    names, data = encode_for_server(COLUMNS, described)
    assert dict(zip(names, data, strict=True)) == expected


def test_encode_for_server_keeps_nulls_in_nullable_timestamps() -> None:
    names, data = encode_for_server(
        {"valid_until": [None, 1500]},
        [("valid_until", "Nullable(DateTime('UTC'))"), ("valid_until_ms", "UInt16")],
    )
    assert dict(zip(names, data, strict=True)) == {
        "valid_until": [None, 1],
        "valid_until_ms": [0, 500],
    }


def test_a_contract_column_the_table_lacks_is_a_missing_migration() -> None:
    with pytest.raises(SinkError, match="no column for"):
        encode_for_server({"event_id": ["a"], "surprise": [1]}, [("event_id", "String")])


@pytest.mark.parametrize(
    ("text", "version"),
    [
        pytest.param("18.16.1", (18, 16, 1), id="debian server"),
        pytest.param("26.9.2.1", (26, 9, 2, 1), id="chdb"),
        pytest.param("24.3.1.2672-lts", (24, 3, 1), id="a suffix ends the tuple"),
    ],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version
