"""ChdbWriter specifics: retention by TTL, persistence on disk, a closed writer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sinks import SinkUnavailable, Writer, migrate, open_writer
from sinks.readback import read_contract_rows

pytestmark = pytest.mark.chdb

DAY_MS = 86_400_000


@pytest.fixture
def writer(chdb_url: str) -> Iterator[Writer]:
    opened = open_writer(chdb_url)
    try:
        yield opened
    finally:
        opened.close()


def reading(event_id: str, event_time: int) -> dict[str, object]:
    return {
        "event_id": event_id,
        "community_id": "91350100M000100Y43",
        "gate_id": "east-gate",
        "device_id": "ir-east-01",
        "subject_id": None,
        "temperature_c": 36.4,
        "ambient_c": 12.5,
        "sensor": "INFRARED_GATE",
        "event_time": event_time,
    }


def test_rows_older_than_the_retention_are_not_kept(writer: Writer) -> None:
    migrate(writer, retention_days=90)
    ((now_ms,),) = writer.query("SELECT toUnixTimestamp64Milli(now64(3))")
    writer.write(
        "temperature_readings",
        [reading("old", now_ms - 91 * DAY_MS), reading("recent", now_ms - 89 * DAY_MS)],
    )
    writer.execute(f"OPTIMIZE TABLE {writer.database}.temperature_readings FINAL")
    kept = read_contract_rows(writer, "temperature_readings")
    assert [row["event_id"] for row in kept] == ["recent"]


def test_rows_survive_closing_and_reopening_the_directory(chdb_url: str) -> None:
    first = open_writer(chdb_url)
    try:
        migrate(first, retention_days=10_000)
        first.write("temperature_readings", [reading("r1", 1_581_726_600_000)])
    finally:
        first.close()
    second = open_writer(chdb_url)
    try:
        assert migrate(second) == []
        assert read_contract_rows(second, "temperature_readings")[0]["event_id"] == "r1"
    finally:
        second.close()


def test_a_closed_writer_is_unavailable(writer: Writer) -> None:
    migrate(writer)
    writer.close()
    with pytest.raises(SinkUnavailable):
        writer.write("temperature_readings", [reading("r1", 1_581_726_600_000)])


def test_an_insert_retried_after_it_had_landed_is_dropped_on_arrival(writer: Writer) -> None:
    migrate(writer, retention_days=10_000)
    batch = [reading(f"r{i}", 1_581_726_600_000 + i) for i in range(100)]
    writer.write("temperature_readings", batch)
    writer.write("temperature_readings", batch)  # the same block: deduplicated by the window
    ((stored,),) = writer.query(f"SELECT count() FROM {writer.database}.temperature_readings")
    assert stored == 100
