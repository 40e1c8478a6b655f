"""The Writer contract, on both backends: chdb (current ClickHouse in-process) and the Debian
clickhouse-server 18.16 (legacy DDL behind the version check)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas import contract
from sinks import SinkDataError, SinkError, Writer, migrate, open_writer
from sinks.legacy import MS_SUFFIX
from sinks.migrate import load_migrations
from sinks.readback import read_contract_rows
from sinks.rows import TABLE_OF_RECORD, column_names

# The examples are from February 2020; a 90-day TTL would expire them on insert.
HISTORY_RETENTION_DAYS = 10_000


@pytest.fixture(
    params=[
        pytest.param("chdb_url", marks=pytest.mark.chdb, id="chdb"),
        pytest.param("clickhouse_url", marks=pytest.mark.clickhouse_server, id="server-18.16"),
    ]
)
def writer(request: pytest.FixtureRequest) -> Iterator[Writer]:
    url = request.getfixturevalue(request.param)
    opened = open_writer(url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def migrated(writer: Writer) -> Writer:
    migrate(writer, retention_days=HISTORY_RETENTION_DAYS)
    return writer


def scans(n: int, *, start: int = 0, base_ms: int = 1_581_726_600_000) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"00000000-0000-5000-8000-{i:012d}",
            "community_id": "91350100M000100Y43",
            "gate_id": f"gate-{i % 3}",
            "device_id": f"qr-{i % 3}",
            "direction": "IN" if i % 2 else "OUT",
            "subject_type": "RESIDENT",
            "subject_id": f"tok{i}",
            "household_id": None,
            "method": "QR",
            "health_code": "GREEN",
            "face_consent": False,
            "temperature_c": 36.5,
            "event_time": base_ms + i * 1_001,
        }
        for i in range(start, start + n)
    ]


def count(writer: Writer, table: str, *, final: bool) -> int:
    suffix = " FINAL" if final else ""
    ((n,),) = writer.query(f"SELECT count() FROM {writer.database}.{table}{suffix}")
    return int(n)


def test_migrate_twice_applies_nothing_the_second_time(writer: Writer) -> None:
    first = migrate(writer)
    assert first == [m.name for m in load_migrations()]
    assert first[:2] == ["0001_events", "0002_outputs"]
    assert migrate(writer) == []
    recorded = writer.query(f"SELECT version, name FROM {writer.database}.schema_migrations")
    assert sorted(recorded) == [(int(m.name[:4]), m.name) for m in load_migrations()]


@pytest.mark.parametrize("table", sorted(TABLE_OF_RECORD.values()))
def test_every_contract_field_has_its_column(migrated: Writer, table: str) -> None:
    described = [row[0] for row in migrated.query(f"DESCRIBE TABLE {migrated.database}.{table}")]
    # 18.16 stores a timestamp as seconds + x_ms and a map as x.key / x.value
    stored = {name.removesuffix(MS_SUFFIX).split(".")[0] for name in described}
    assert stored == set(column_names(table))


EXAMPLES = [
    pytest.param(record, stem, id=stem)
    for record in sorted(TABLE_OF_RECORD)
    for stem in contract.named_examples(record)
]


@pytest.mark.parametrize(("record", "stem"), EXAMPLES)
def test_every_contract_example_reads_back_intact(migrated: Writer, record: str, stem: str) -> None:
    event = contract.named_examples(record)[stem]
    table = TABLE_OF_RECORD[record]
    assert migrated.write(table, [event]) == 1
    assert read_contract_rows(migrated, table) == [event]


def test_a_redelivered_batch_collapses_to_one_row_per_event_id(migrated: Writer) -> None:
    batch = scans(300)
    migrated.write("gate_scans", batch)
    before = count(migrated, "gate_scans", final=True)
    migrated.write("gate_scans", batch)  # the whole batch again (crash before commit)
    migrated.write("gate_scans", batch[100:150])  # and a part of it
    # the engine, not the writer, dedupes: the partial batch at least is stored again
    assert count(migrated, "gate_scans", final=False) >= 350
    assert count(migrated, "gate_scans", final=True) == before == 300


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param(
            {"event_time": "yesterday"}, "a timestamp that is not epoch ms", id="bad time"
        ),
        pytest.param({"direction": "SIDEWAYS"}, "an enum symbol the table lacks", id="bad enum"),
        pytest.param({"event_id": None}, "null in a non-null column", id="null id"),
    ],
)
def test_rows_the_table_cannot_hold_are_a_data_error(
    migrated: Writer, change: dict[str, Any], why: str
) -> None:
    bad = [*scans(2), {**scans(1, start=2)[0], **change}]
    with pytest.raises(SinkDataError) as caught:
        migrated.write("gate_scans", bad)
    assert caught.value.reason, why
    # nothing of the rejected batch landed, and the writer carries on
    assert count(migrated, "gate_scans", final=False) == 0
    assert migrated.write("gate_scans", scans(2)) == 2


def test_an_unknown_table_is_not_a_data_error(migrated: Writer) -> None:
    with pytest.raises(SinkError) as caught:
        migrated.write("gate_scan", scans(1))
    assert not isinstance(caught.value, SinkDataError)


def test_writing_before_migrating_is_not_a_data_error(writer: Writer) -> None:
    with pytest.raises(SinkError) as caught:
        writer.write("gate_scans", scans(1))
    assert not isinstance(caught.value, SinkDataError)


def test_an_empty_write_is_a_no_op(migrated: Writer) -> None:
    assert migrated.write("alerts", []) == 0
