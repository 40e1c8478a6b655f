"""From a device's native event to contract records — pure, and the one place raw identifiers
become pseudonyms (keyed HMAC, ``fangxian.core.privacy.Pseudonymiser``).

Subjects, by what the device read (docs/edge.md, "Identifiers and QR formats"):

- employee number: communities enrol residents on a terminal under their resident token (32 hex
  characters), which passes through; an 18-character ID number found there is pseudonymised as
  one (``token("resident", id)`` — the register's resident id); anything else
  ``token("employee", community + number)``.
- ID number → ``token("resident", id)``; card → ``token("card", community + card)``;
  plate → ``token("plate", plate)`` (the register's vehicle id), subject VEHICLE.
- QR text ``FX1R:<resident token>:<G|Y|R>`` (a community-issued resident code carrying the
  health-code colour), ``FX1V:<pass number>`` (a visitor pass → ``token("pass", community +
  number)``), an 18-character ID number, or anything else (``token("qr", text)``, UNKNOWN).
- nobody identified → UNKNOWN with ``token("unidentified", device + serial)``.

Event ids: ``uuid5(EDGE_NAMESPACE, "<device_id>/<device's event serial>")``, so a resend or an
offline replay is the same event.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from fangxian.core.codes import normalise_id_number, resident_id_check_ok
from fangxian.core.privacy import Pseudonymiser
from fangxian.edge.adapter import IdentifierKind, NativeEvent
from fangxian.edge.register import DeviceEntry

#: namespace of the edge's event ids (uuid5 over "fangxian-edge")
EDGE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:fangxian:edge")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_HEALTH = {"G": "GREEN", "Y": "YELLOW", "R": "RED"}


@dataclass(frozen=True, slots=True)
class Subject:
    subject_type: str
    subject_id: str
    health_code: str | None = None


def event_id(device_id: str, event_serial: str, suffix: str = "") -> str:
    return str(uuid.uuid5(EDGE_NAMESPACE, f"{device_id}/{event_serial}{suffix}"))


def _id_number(text: str) -> str | None:
    candidate = normalise_id_number(text)
    return candidate if len(candidate) == 18 and resident_id_check_ok(candidate) else None


def resolve_subject(event: NativeEvent, entry: DeviceEntry, pseudonyms: Pseudonymiser) -> Subject:
    raw = event.identifier
    community = entry.community_id
    kind = event.identifier_kind
    if raw is None or kind is None:
        return Subject(
            "UNKNOWN", pseudonyms.token("unidentified", f"{entry.device_id}/{event.event_serial}")
        )
    if kind == IdentifierKind.PLATE:
        return Subject("VEHICLE", pseudonyms.token("plate", raw))
    if kind == IdentifierKind.ID_NUMBER:
        return Subject("RESIDENT", pseudonyms.token("resident", raw))
    if kind == IdentifierKind.EMPLOYEE_NO:
        if _TOKEN.match(raw):
            return Subject("RESIDENT", raw)
        id18 = _id_number(raw)
        if id18 is not None:
            return Subject("RESIDENT", pseudonyms.token("resident", id18))
        return Subject("RESIDENT", pseudonyms.token("employee", community + raw))
    if kind == IdentifierKind.CARD_NO:
        return Subject("RESIDENT", pseudonyms.token("card", community + raw))
    if kind == IdentifierKind.QR:
        parts = raw.strip().split(":")
        if len(parts) == 3 and parts[0] == "FX1R" and _TOKEN.match(parts[1]):
            return Subject("RESIDENT", parts[1], _HEALTH.get(parts[2].upper()))
        if len(parts) == 2 and parts[0] == "FX1V" and parts[1]:
            return Subject("VISITOR", pseudonyms.token("pass", community + parts[1]))
        id18 = _id_number(raw)
        if id18 is not None:
            return Subject("RESIDENT", pseudonyms.token("resident", id18))
        return Subject("UNKNOWN", pseudonyms.token("qr", raw))
    return Subject("UNKNOWN", pseudonyms.token("opaque", community + raw))


def contract_records(
    event: NativeEvent,
    entry: DeviceEntry,
    subject: Subject,
    arrival_ms: int,
) -> list[tuple[str, dict[str, Any]]]:
    """The contract records of ``event``: its GateScan (with the temperature, if measured)."""
    when = event.event_time_ms if event.event_time_ms is not None else arrival_ms
    health = event.health_code or subject.health_code
    scan = {
        "event_id": event_id(
            entry.device_id,
            event.event_serial,
            f"/{subject.subject_id}" if event.per_person else "",
        ),
        "community_id": entry.community_id,
        "gate_id": entry.gate_id,
        "device_id": entry.device_id,
        "direction": event.direction or entry.direction,
        "subject_type": subject.subject_type,
        "subject_id": subject.subject_id,
        "household_id": None,
        "method": event.method,
        "health_code": health or "UNKNOWN",
        "face_consent": False,  # the resident record's consent decides (docs/edge.md)
        "temperature_c": event.temperature_c,
        "event_time": when,
    }
    # The reading travels on the scan (``temperature_c``): the decide stage runs the temperature
    # rules on it. A TemperatureReading beside it would be a second reading of the same moment
    # and could pass for the recheck of its own fever.
    return [("GateScan", scan)]
