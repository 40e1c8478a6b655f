"""The one table of where each contract record travels: record name → topic → key → kind.

Every producer, loader, consumer, the demo, the bench and the tests read this table; nothing
else spells it out (docs/contract.md describes the same table for people).

- ``record``: the Avro record name (``schemas/avro/<record>.avsc``);
- ``topic``: the attribute of ``fangxian.core.settings.Topics`` that names its Kafka topic
  (names are configurable, attributes are not);
- ``key``: the record field whose value (UTF-8) is the Kafka message key;
- ``kind``: for reference data, the name ``fangxian load <kind>`` and the worker's reference
  store use (``None`` for events and outputs);
- ``role``: ``event`` (devices → decide stage), ``reference`` (compacted, loaded before events)
  or ``output`` (what the worker produces).

Reference routes are listed in load order: the rules first, so a community's thresholds are in
place before its residents, passes and vehicles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

Role = Literal["event", "reference", "output"]


@dataclass(frozen=True)
class Route:
    record: str
    topic: str
    key: str
    role: Role
    kind: str | None = None


ROUTES: Final[tuple[Route, ...]] = (
    Route("GateScan", "gate_scans", "subject_id", "event"),
    Route("TemperatureReading", "temperature_readings", "device_id", "event"),
    Route("HealthReport", "health_reports", "resident_id", "event"),
    Route("CommunityRules", "rules", "community_id", "reference", kind="rules"),
    Route("Resident", "residents", "resident_id", "reference", kind="residents"),
    Route("VisitorPass", "passes", "pass_id", "reference", kind="passes"),
    Route("Vehicle", "vehicles", "vehicle_id", "reference", kind="vehicles"),
    Route("GateDecision", "gate_decisions", "subject_id", "output"),
    Route("Alert", "alerts", "community_id", "output"),
    Route("DeadLetter", "dead_letters", "source_topic", "output"),
)

#: the ``Topics`` attribute of the daily reports (JSON, not an Avro record)
REPORTS_TOPIC: Final = "reports_daily"

ROUTE_OF: Final[dict[str, Route]] = {r.record: r for r in ROUTES}
EVENT_ROUTES: Final = tuple(r for r in ROUTES if r.role == "event")
REFERENCE_ROUTES: Final = tuple(r for r in ROUTES if r.role == "reference")
OUTPUT_ROUTES: Final = tuple(r for r in ROUTES if r.role == "output")

#: reference kind → record name, in load order
RECORD_OF_KIND: Final[dict[str, str]] = {str(r.kind): r.record for r in REFERENCE_ROUTES}
#: ``Topics`` attributes by role
EVENT_TOPICS: Final = tuple(r.topic for r in EVENT_ROUTES)
REFERENCE_TOPICS: Final = tuple(r.topic for r in REFERENCE_ROUTES)
OUTPUT_TOPICS: Final = (*(r.topic for r in OUTPUT_ROUTES), REPORTS_TOPIC)


def topic_and_key(topics: Any, record_name: str, record: dict[str, Any]) -> tuple[str, bytes]:
    """The topic name (from a ``Topics``) and message key of ``record``."""
    route = ROUTE_OF[record_name]
    return getattr(topics, route.topic), str(record[route.key]).encode()


def record_of_topic(topics: Any, role: Role) -> dict[str, str]:
    """Topic name → record name for the routes of ``role`` under these ``Topics``."""
    return {getattr(topics, r.topic): r.record for r in ROUTES if r.role == role}
