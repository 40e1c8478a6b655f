"""The one table of where each contract record travels: record name → topic → key → kind.

Every producer, loader, consumer, the demo, the bench and the tests read this table; nothing
else spells it out (docs/contract.md describes the same table for people).

- ``record``: the Avro record name (``schemas/avro/<record>.avsc``);
- ``topic``: the attribute of ``fangxian.core.settings.Topics`` that names its Kafka topic
  (names are configurable, attributes are not);
- ``key``: the record field whose value (UTF-8) is the Kafka message key (``record_key``), or
  several fields joined by ``KEY_SEP``. The three events are keyed by ``community_id`` from the
  device on: every event of a community is in one partition of its topic
  (``schemas.partitioner.partition_for``, the Java client's murmur2), the partition whose task
  owns the community's state. A vehicle is keyed by ``community_id|vehicle_id``: a plate token
  is the same in every community, and a plate registered in two communities is two
  registrations (issue 20), each replaced or deleted on its own on the compacted topic;
- ``kind``: for reference data, the name ``fangxian load <kind>`` and the worker's reference
  store use (``None`` for events and outputs);
- ``role``: ``event`` (devices → decide stage), ``reference`` (compacted, loaded before events),
  ``roster`` (compacted, the on-duty dispatcher's reference data: staff, duty, escalation),
  ``output`` (what the worker and the dispatcher produce) or ``control`` (compacted, what
  staff tell the dispatcher from the console or the CLI: silences);
- ``table``: the ClickHouse table that keeps it (``sinks/migrations/``), ``None`` for reference
  and control data (it lives on its compacted topic only; what a silence did is in
  ``alert_actions`` as SILENCED).

Reference routes are listed in load order: the rules first, so a community's thresholds are in
place before its residents, passes and vehicles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from schemas.partitioner import partition_for

Role = Literal["event", "reference", "roster", "output", "control"]

#: joins the fields of a composite key (``Route.key`` ``"community_id|vehicle_id"``)
KEY_SEP: Final = "|"


@dataclass(frozen=True)
class Route:
    record: str
    topic: str
    key: str
    role: Role
    kind: str | None = None
    table: str | None = None


# fmt: off
ROUTES: Final[tuple[Route, ...]] = (
    #     record                topic                   key             role         kind         table
    Route("GateScan",           "gate_scans",           "community_id", "event",     None,        "gate_scans"),
    Route("TemperatureReading", "temperature_readings", "community_id", "event",     None,        "temperature_readings"),
    Route("HealthReport",       "health_reports",       "community_id", "event",     None,        "health_reports"),
    Route("CommunityRules",     "rules",                "community_id", "reference", "rules",     None),
    Route("Resident",           "residents",            "resident_id",  "reference", "residents", None),
    Route("VisitorPass",        "passes",               "pass_id",      "reference", "passes",    None),
    Route("Vehicle",            "vehicles",             "community_id|vehicle_id", "reference", "vehicles", None),
    Route("GateDecision",       "gate_decisions",       "subject_id",   "output",    None,        "gate_decisions"),
    Route("Alert",              "alerts",               "community_id", "output",    None,        "alerts"),
    Route("DeadLetter",         "dead_letters",         "source_topic", "output",    None,        "dead_letters"),
    Route("StaffMember",        "staff",                "staff_id",     "roster",    "staff",     None),
    Route("DutyShift",          "duty",                 "shift_id",     "roster",    "duty",      None),
    Route("EscalationPolicy",   "escalation",           "community_id", "roster",    "escalation", None),
    Route("AlertAction",        "alert_actions",        "alert_id",     "output",    None,        "alert_actions"),
    Route("Silence",            "silences",             "silence_id",   "control",   None,        None),
)
# fmt: on

#: the ``Topics`` attribute of the daily reports (JSON, not an Avro record)
REPORTS_TOPIC: Final = "reports_daily"

ROUTE_OF: Final[dict[str, Route]] = {r.record: r for r in ROUTES}
EVENT_ROUTES: Final = tuple(r for r in ROUTES if r.role == "event")
REFERENCE_ROUTES: Final = tuple(r for r in ROUTES if r.role == "reference")
OUTPUT_ROUTES: Final = tuple(r for r in ROUTES if r.role == "output")
ROSTER_ROUTES: Final = tuple(r for r in ROUTES if r.role == "roster")
CONTROL_ROUTES: Final = tuple(r for r in ROUTES if r.role == "control")

#: reference kind → record name, in load order
RECORD_OF_KIND: Final[dict[str, str]] = {str(r.kind): r.record for r in REFERENCE_ROUTES}
#: roster kind (``fangxian load staff|duty|escalation``) → record name
ROSTER_RECORD_OF_KIND: Final[dict[str, str]] = {str(r.kind): r.record for r in ROSTER_ROUTES}
#: record name → ClickHouse table, for the records the sinks keep
TABLE_OF_RECORD: Final[dict[str, str]] = {r.record: r.table for r in ROUTES if r.table}
#: event record name → its ClickHouse table
EVENT_TABLES: Final[dict[str, str]] = {r.record: str(r.table) for r in EVENT_ROUTES}
#: ``Topics`` attributes by role
EVENT_TOPICS: Final = tuple(r.topic for r in EVENT_ROUTES)
REFERENCE_TOPICS: Final = tuple(r.topic for r in REFERENCE_ROUTES)
ROSTER_TOPICS: Final = tuple(r.topic for r in ROSTER_ROUTES)
CONTROL_TOPICS: Final = tuple(r.topic for r in CONTROL_ROUTES)
OUTPUT_TOPICS: Final = (*(r.topic for r in OUTPUT_ROUTES), REPORTS_TOPIC)


def key_fields(record_name: str) -> tuple[str, ...]:
    """The fields whose values make the Kafka message key of a ``record_name`` record."""
    return tuple(ROUTE_OF[record_name].key.split(KEY_SEP))


def record_key(record_name: str, record: dict[str, Any]) -> bytes:
    """The Kafka message key of ``record`` (a ``record_name`` record): its key field, UTF-8
    (a composite key: its fields joined by ``KEY_SEP``). Every producer takes the key from here
    and the partition from ``partition_for(record_key(...), partitions)``."""
    key = ROUTE_OF[record_name].key
    if KEY_SEP not in key:
        return str(record[key]).encode()
    return KEY_SEP.join(str(record[f]) for f in key.split(KEY_SEP)).encode()


def vehicle_key(community_id: str, vehicle_id: str) -> str:
    """A registered vehicle's key (its Kafka key on ``reference.vehicles``, and the key the
    decide stage and the edge look a VEHICLE scan up by): the plate token scoped by community."""
    return f"{community_id}{KEY_SEP}{vehicle_id}"


def topic_and_key(topics: Any, record_name: str, record: dict[str, Any]) -> tuple[str, bytes]:
    """The topic name (from a ``Topics``) and message key of ``record``."""
    return getattr(topics, ROUTE_OF[record_name].topic), record_key(record_name, record)


def record_partition(record_name: str, record: dict[str, Any], partitions: int) -> int:
    """The partition of ``record`` on its topic of ``partitions`` partitions (murmur2 of its
    key, as the Java client's default partitioner places it)."""
    return partition_for(record_key(record_name, record), partitions)


def record_of_topic(topics: Any, role: Role) -> dict[str, str]:
    """Topic name → record name for the routes of ``role`` under these ``Topics``."""
    return {getattr(topics, r.topic): r.record for r in ROUTES if r.role == role}
