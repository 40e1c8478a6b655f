"""The one contract table (schemas/topics.py) agrees with the .avsc files, the settings' topic
names and the ClickHouse tables."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fangxian.core.settings import Topics
from schemas import contract, topics
from schemas.partitioner import partition_for
from schemas.topics import ROUTES, Route

TOPIC_ATTRS = {f.name for f in fields(Topics)}


@pytest.mark.parametrize("route", [pytest.param(r, id=r.record) for r in ROUTES])
def test_route_names_real_things(route: Route) -> None:
    assert route.record in contract.RECORD_NAMES
    assert route.topic in TOPIC_ATTRS
    names = {f["name"] for f in contract.schema(route.record)["fields"]}
    assert set(topics.key_fields(route.record)) <= names
    assert (route.kind is not None) == (route.role in ("reference", "roster"))
    assert (route.table is None) == (route.role in ("reference", "roster", "control"))


def test_every_record_and_topic_is_in_the_table_once() -> None:
    assert sorted(r.record for r in ROUTES) == sorted(contract.RECORD_NAMES)
    assert sorted((*(r.topic for r in ROUTES), topics.REPORTS_TOPIC)) == sorted(TOPIC_ATTRS)


@pytest.mark.parametrize(
    ("record", "record_dict", "topic", "key"),
    [
        pytest.param(
            "GateScan",
            {"community_id": "91350100M000100Y43", "subject_id": "tok1"},
            "p.gate.scans",
            b"91350100M000100Y43",
            id="event",
        ),
        pytest.param("Resident", {"resident_id": "r9"}, "p.reference.residents", b"r9", id="ref"),
        pytest.param(
            "Vehicle",
            {"vehicle_id": "v9", "community_id": "91350100M000100Y43"},
            "p.reference.vehicles",
            b"91350100M000100Y43|v9",
            id="vehicle: plate token scoped by community (issue 20)",
        ),
    ],
)
def test_topic_and_key(record: str, record_dict: dict[str, str], topic: str, key: bytes) -> None:
    assert topics.topic_and_key(Topics().with_prefix("p."), record, record_dict) == (topic, key)


def test_events_are_keyed_by_community_at_entry() -> None:
    """A community's events share one partition of each event topic from the device on."""
    assert {r.record: r.key for r in topics.EVENT_ROUTES} == {
        "GateScan": "community_id",
        "TemperatureReading": "community_id",
        "HealthReport": "community_id",
    }


@pytest.mark.parametrize("record", [r.record for r in topics.EVENT_ROUTES])
def test_record_key_and_partition_of_an_event(record: str) -> None:
    event = contract.examples(record)[0]
    key = topics.record_key(record, event)
    assert key == event["community_id"].encode()
    assert topics.record_partition(record, event, 12) == partition_for(key, 12)


def test_reference_kinds_load_rules_first() -> None:
    assert list(topics.RECORD_OF_KIND) == ["rules", "residents", "passes", "vehicles"]


def test_roster_kinds_are_the_dispatchers_and_not_the_decide_stages() -> None:
    assert list(topics.ROSTER_RECORD_OF_KIND) == ["staff", "duty", "escalation"]
    assert not set(topics.ROSTER_RECORD_OF_KIND) & set(topics.RECORD_OF_KIND)


def test_every_table_in_the_contract_table_has_columns() -> None:
    from sinks.rows import TABLES

    assert set(topics.TABLE_OF_RECORD.values()) <= set(TABLES)


def test_silences_are_staff_control_records_not_loadable_reference_data() -> None:
    """``alert.silences`` is written by the console and ``fangxian silence``, never by
    ``fangxian load`` (no kind), and kept on its compacted topic only (no table)."""
    assert topics.CONTROL_TOPICS == ("silences",)
    route = topics.ROUTE_OF["Silence"]
    assert (route.key, route.kind, route.table) == ("silence_id", None, None)
    assert "silences" not in topics.ROSTER_RECORD_OF_KIND
