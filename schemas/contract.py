"""The Avro contract as data: the ``.avsc`` files, their example payloads and enum symbols.

Schemas keep their logical types here (``timestamp-millis``, ``date``); the codec strips them
for the hot path. Everything returned is a fresh copy, so callers may mutate it.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

NAMESPACE: Final = "fangxian.v1"

RECORD_NAMES: Final[tuple[str, ...]] = (
    "GateScan",
    "TemperatureReading",
    "HealthReport",
    "GateDecision",
    "Alert",
    "DeadLetter",
    "Resident",
    "VisitorPass",
    "Vehicle",
    "CommunityRules",
    "StaffMember",
    "DutyShift",
    "EscalationPolicy",
    "AlertAction",
    "Silence",
)

Schema = dict[str, Any]


def _package_dir(name: str) -> Traversable:
    return resources.files(__package__ or "schemas").joinpath(name)


@functools.cache
def _schemas() -> dict[str, Schema]:
    folder = _package_dir("avro")
    loaded = {}
    for name in RECORD_NAMES:
        loaded[name] = json.loads(folder.joinpath(f"{name}.avsc").read_text(encoding="utf-8"))
    return loaded


def _check_record_name(name: str) -> None:
    if name not in RECORD_NAMES:
        raise KeyError(f"unknown record {name!r}; the contract has {', '.join(RECORD_NAMES)}")


def schema(name: str) -> Schema:
    """The schema of record ``name`` (e.g. ``"GateScan"``) as parsed JSON, logical types kept."""
    _check_record_name(name)
    return copy.deepcopy(_schemas()[name])


def _bytes_fields(record: Schema) -> tuple[str, ...]:
    def is_bytes(type_: Any) -> bool:
        return type_ == "bytes" or (isinstance(type_, list) and "bytes" in type_)

    return tuple(f["name"] for f in record["fields"] if is_bytes(f["type"]))


def _example_from_json(record: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    # JSON has no bytes: as in Avro's JSON encoding, a bytes field is a string whose code
    # points 0-255 are the byte values.
    for field in _bytes_fields(record):
        if isinstance(payload.get(field), str):
            payload[field] = payload[field].encode("latin-1")
    return payload


@functools.cache
def _example_files(name: str) -> tuple[tuple[str, str], ...]:
    files = [
        entry
        for entry in _package_dir("examples").iterdir()
        if entry.name.endswith(".json")
        and (entry.name == f"{name}.json" or entry.name.startswith(f"{name}."))
    ]
    return tuple(
        (entry.name.removesuffix(".json"), entry.read_text(encoding="utf-8"))
        for entry in sorted(files, key=lambda e: e.name)
    )


def named_examples(name: str) -> dict[str, dict[str, Any]]:
    """Example payloads of record ``name`` keyed by file stem (``"GateScan.visitor"``)."""
    _check_record_name(name)
    record = _schemas()[name]
    return {
        stem: _example_from_json(record, json.loads(text)) for stem, text in _example_files(name)
    }


def examples(name: str) -> list[dict[str, Any]]:
    """Example payloads of record ``name``, ready for ``Codec.encode`` (int times and dates)."""
    return list(named_examples(name).values())


def field_defaults(name: str) -> dict[str, Any]:
    """The fields of record ``name`` that have a default, with their default values."""
    _check_record_name(name)
    return {
        f["name"]: copy.deepcopy(f["default"]) for f in _schemas()[name]["fields"] if "default" in f
    }


def _named_types(node: Any) -> list[Schema]:
    if isinstance(node, list):
        return [found for item in node for found in _named_types(item)]
    if not isinstance(node, dict):
        return []
    found = [node] if node.get("type") in ("enum", "record", "fixed") else []
    for key in ("fields", "type", "items", "values"):
        if key in node:
            found.extend(_named_types(node[key]))
    return found


@functools.cache
def enum_symbols(enum_name: str) -> tuple[str, ...]:
    """Symbols of the named enum type (``"AlertType"``) as declared in the contract."""
    for record in _schemas().values():
        for named in _named_types(record):
            if named["type"] == "enum" and named["name"] == enum_name:
                return tuple(named["symbols"])
    raise KeyError(f"no enum {enum_name!r} in the contract")


DIRECTIONS: Final = enum_symbols("Direction")
SUBJECT_TYPES: Final = enum_symbols("SubjectType")
SCAN_METHODS: Final = enum_symbols("ScanMethod")
HEALTH_CODES: Final = enum_symbols("HealthCode")
SENSORS: Final = enum_symbols("Sensor")
SYMPTOMS: Final = enum_symbols("Symptom")
DECISIONS: Final = enum_symbols("Decision")
ALERT_TYPES: Final = enum_symbols("AlertType")
SEVERITIES: Final = enum_symbols("Severity")
RESIDENT_STATUSES: Final = enum_symbols("ResidentStatus")
LIMIT_SCOPES: Final = enum_symbols("LimitScope")
LIMIT_DIRECTIONS: Final = enum_symbols("LimitDirection")
STAFF_ROLES: Final = enum_symbols("StaffRole")
ACTION_KINDS: Final = enum_symbols("ActionKind")

#: The longest entry-limit window a community may configure (``CommunityRules.
#: entry_limit_window_s``): pass history is kept this long whatever the current window, so
#: raising a window (48 h -> 72 h) counts the older passes at once (docs/rules.md, issue 20).
MAX_ENTRY_LIMIT_WINDOW_S: Final = 7 * 86_400
