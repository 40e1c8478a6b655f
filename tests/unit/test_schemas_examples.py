"""The .avsc files say what docs/contract.md says, and every example payload is valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
import pytest

from fangxian.core.codes import credit_code_check_ok
from schemas import Codec, contract

AVRO_DIR = Path(contract.__file__).parent / "avro"

# Field names in contract order (docs/contract.md).
CONTRACT_FIELDS = {
    "GateScan": (
        "event_id community_id gate_id device_id direction subject_type subject_id household_id "
        "method health_code face_consent temperature_c event_time"
    ),
    "TemperatureReading": (
        "event_id community_id gate_id device_id subject_id temperature_c ambient_c sensor "
        "event_time"
    ),
    "HealthReport": (
        "event_id community_id resident_id report_date temperature_c symptoms event_time"
    ),
    "GateDecision": "event_id community_id gate_id subject_id decision reasons decided_at",
    "Alert": (
        "alert_id alert_type severity community_id gate_id device_id subject_id "
        "source_event_ids message_zh message_en details event_time created_at"
    ),
    "DeadLetter": (
        "dead_letter_id reason detail source_topic source_partition source_offset original "
        "created_at"
    ),
    "Resident": (
        "resident_id community_id household_id status observation_start key_groups "
        "face_consent updated_at building_id"
    ),
    "VisitorPass": (
        "pass_id community_id host_resident_id valid_from valid_until max_entries revoked "
        "updated_at"
    ),
    "Vehicle": "vehicle_id community_id owner_resident_id valid_until updated_at",
    "CommunityRules": (
        "community_id timezone fever_threshold_c recheck_window_s plausible_min_c "
        "plausible_max_c yellow_code_action entry_limit_scope entry_limit_direction "
        "entry_limit_count entry_limit_window_s entry_limit_action dedupe_window_s "
        "curfew_start_minute curfew_end_minute curfew_action report_deadline_minute "
        "observation_days device_silent_s drift_margin_c drift_window_s alert_suppression_s "
        "updated_at cluster_scope cluster_min_cases cluster_window_s capacity_persons "
        "gate_anomaly_window_s gate_anomaly_baseline_s gate_anomaly_min_refusals "
        "gate_anomaly_factor"
    ),
    "StaffMember": "staff_id community_id display_name role contacts active updated_at",
    "DutyShift": (
        "shift_id community_id staff_id level gates alert_types min_severity weekdays dates "
        "start_minute end_minute active updated_at"
    ),
    "EscalationPolicy": (
        "community_id timezone steps repeat_interval_s max_repeats group_wait_s "
        "immediate_severities quiet_start_minute quiet_end_minute bypass_quiet_severities "
        "silenced_types ack_link_ttl_s updated_at"
    ),
    "AlertAction": (
        "action_id alert_id community_id action alert_type severity gate_id level staff_ids "
        "channel delivery_id attempt group_count detail alert_event_time created_at"
    ),
    "Silence": (
        "silence_id community_id gate_ids device_ids alert_types starts_at ends_at comment "
        "created_by via created_at updated_by updated_at"
    ),
}

CONTRACT_ENUMS = {
    "Direction": "IN OUT",
    "SubjectType": "RESIDENT VISITOR VEHICLE STAFF UNKNOWN",
    "ScanMethod": "QR HEALTH_CODE FACE PLATE CARD MANUAL",
    "HealthCode": "GREEN YELLOW RED UNKNOWN",
    "Sensor": "INFRARED_GATE INFRARED_HANDHELD CONTACT",
    "Symptom": (
        "FEVER DRY_COUGH FATIGUE SORE_THROAT SHORTNESS_OF_BREATH DIARRHEA "
        "LOSS_OF_TASTE_OR_SMELL MUSCLE_ACHE OTHER"
    ),
    "Decision": "ALLOW WARN RECHECK DENY",
    "AlertType": (
        "FEVER_RECHECK FEVER_CONFIRMED FEVER_CLEARED FEVER_RECHECK_MISSED "
        "TEMPERATURE_IMPLAUSIBLE DEVICE_SILENT DEVICE_DRIFT HEALTH_CODE_RED HEALTH_CODE_YELLOW "
        "QUARANTINE_BREACH UNKNOWN_SUBJECT PASS_INVALID VEHICLE_UNREGISTERED "
        "FACE_CONSENT_MISSING CURFEW_VIOLATION ENTRY_LIMIT_EXCEEDED SYMPTOMS_REPORTED "
        "FEVER_REPORTED REPORT_OVERDUE OBSERVATION_COMPLETED DEVICE_CLOCK_SKEW "
        "EDGE_FALLBACK_DISAGREED OTHER CLUSTER_SUSPECTED OCCUPANCY_OVER_CAPACITY GATE_ANOMALY "
        "HOUSEHOLD_MISMATCH"
    ),
    "Severity": "INFO WARNING CRITICAL",
    "ResidentStatus": "NORMAL HOME_OBSERVATION CENTRALIZED_ISOLATION HOSPITALIZED RECOVERED",
    "LimitScope": "NONE PERSON HOUSEHOLD",
    "LimitDirection": "OUT IN ANY",
    "ClusterScope": "BUILDING HOUSEHOLD COMMUNITY",
    "StaffRole": "GATE_GUARD GRID_WORKER COMMUNITY_STAFF STREET_OFFICE MEDICAL OTHER",
    "ActionKind": (
        "ROUTED SENDING NOTIFIED DELIVERY_FAILED ACKNOWLEDGED ESCALATED RESOLVED SILENCED "
        "ACK_REQUESTED RESOLVE_REQUESTED"
    ),
}

# CommunityRules defaults, as the table in docs/contract.md gives them.
CONTRACT_RULE_DEFAULTS = {
    "timezone": "Asia/Shanghai",
    "fever_threshold_c": 37.3,
    "recheck_window_s": 300,
    "plausible_min_c": 34.0,
    "plausible_max_c": 43.0,
    "yellow_code_action": "WARN",
    "entry_limit_scope": "NONE",
    "entry_limit_direction": "OUT",
    "entry_limit_count": 1,
    "entry_limit_window_s": 172800,
    "entry_limit_action": "DENY",
    "dedupe_window_s": 30,
    "curfew_start_minute": None,
    "curfew_end_minute": None,
    "curfew_action": "WARN",
    "report_deadline_minute": 600,
    "observation_days": 14,
    "device_silent_s": 600,
    "drift_margin_c": 0.8,
    "drift_window_s": 900,
    "alert_suppression_s": 600,
    "updated_at": 0,
    "cluster_scope": "BUILDING",
    "cluster_min_cases": 3,
    "cluster_window_s": 259200,
    "capacity_persons": 0,
    "gate_anomaly_window_s": 600,
    "gate_anomaly_baseline_s": 3600,
    "gate_anomaly_min_refusals": 10,
    "gate_anomaly_factor": 3.0,
}

TIMESTAMP_FIELDS = {
    "event_time",
    "decided_at",
    "created_at",
    "updated_at",
    "valid_from",
    "valid_until",
    "alert_event_time",
    "starts_at",
    "ends_at",
}
DATE_FIELDS = {"report_date", "observation_start"}
TOKEN_FIELDS = (
    "subject_id",
    "household_id",
    "resident_id",
    "host_resident_id",
    "owner_resident_id",
    "vehicle_id",
    "pass_id",
)

ALL_EXAMPLES = [
    pytest.param(name, stem, payload, id=stem)
    for name in contract.RECORD_NAMES
    for stem, payload in contract.named_examples(name).items()
]


def _branches(type_: Any) -> list[Any]:
    return type_ if isinstance(type_, list) else [type_]


def _logical_type(type_: Any) -> str | None:
    for branch in _branches(type_):
        if isinstance(branch, dict) and "logicalType" in branch:
            return str(branch["logicalType"])
    return None


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_each_avsc_parses_alone_with_both_libraries(name: str) -> None:
    text = (AVRO_DIR / f"{name}.avsc").read_text(encoding="utf-8")
    parsed = avro.schema.parse(text)
    fastavro.parse_schema(json.loads(text))
    assert isinstance(parsed, avro.schema.RecordSchema)
    assert parsed.fullname == f"fangxian.v1.{name}"
    assert parsed.doc, "every record is documented"


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_fields_are_the_contract_fields_in_order(name: str) -> None:
    fields = [f["name"] for f in contract.schema(name)["fields"]]
    assert fields == CONTRACT_FIELDS[name].split()


@pytest.mark.parametrize("enum_name", CONTRACT_ENUMS)
def test_enum_symbols_are_the_contract_symbols(enum_name: str) -> None:
    assert contract.enum_symbols(enum_name) == tuple(CONTRACT_ENUMS[enum_name].split())


def test_enum_definitions_repeated_across_files_are_identical() -> None:
    seen: dict[str, dict[str, Any]] = {}
    for name in contract.RECORD_NAMES:
        for node in contract._named_types(contract.schema(name)):
            if node["type"] == "enum":
                assert seen.setdefault(node["name"], node) == node, node["name"]
    assert set(seen) == set(CONTRACT_ENUMS)


def test_alert_type_defaults_to_other_so_new_symbols_stay_compatible() -> None:
    alert_type = next(f for f in contract.schema("Alert")["fields"] if f["name"] == "alert_type")
    assert alert_type["type"]["default"] == "OTHER"


def test_every_community_rule_has_the_contract_default() -> None:
    assert contract.field_defaults("CommunityRules") == CONTRACT_RULE_DEFAULTS


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_times_are_timestamp_millis_and_dates_are_date(name: str) -> None:
    for f in contract.schema(name)["fields"]:
        if f["name"] in TIMESTAMP_FIELDS:
            assert _logical_type(f["type"]) == "timestamp-millis", f["name"]
        elif f["name"] in DATE_FIELDS:
            assert _logical_type(f["type"]) == "date", f["name"]
        else:
            assert _logical_type(f["type"]) is None, f["name"]


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_nullable_fields_default_to_null(name: str) -> None:
    for f in contract.schema(name)["fields"]:
        if isinstance(f["type"], list):
            assert f["type"][0] == "null" and f.get("default", "missing") is None, f["name"]


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_every_record_has_an_example(name: str) -> None:
    assert contract.examples(name)


def test_gate_scan_examples_cover_resident_visitor_vehicle_and_face() -> None:
    scans = contract.examples("GateScan")
    assert {"RESIDENT", "VISITOR", "VEHICLE"} <= {s["subject_type"] for s in scans}
    assert any(s["method"] == "FACE" and s["face_consent"] for s in scans)


@pytest.mark.parametrize(("name", "stem", "payload"), ALL_EXAMPLES)
def test_example_round_trips_through_the_codec(
    name: str, stem: str, payload: dict[str, Any]
) -> None:
    codec = Codec()
    assert codec.decode(name, codec.encode(name, payload)) == payload


@pytest.mark.parametrize(("name", "stem", "payload"), ALL_EXAMPLES)
def test_example_is_realistic(name: str, stem: str, payload: dict[str, Any]) -> None:
    if "community_id" in payload:  # a DeadLetter has none
        assert credit_code_check_ok(payload["community_id"])
    for field in TOKEN_FIELDS:
        token = payload.get(field)
        if token is not None:
            assert len(token) >= 16 and all(c in "0123456789abcdef" for c in token), field
    for field in TIMESTAMP_FIELDS | DATE_FIELDS:
        value = payload.get(field)
        assert value is None or type(value) is int, field


def test_dead_letter_example_carries_the_original_bytes() -> None:
    (dead_letter,) = contract.examples("DeadLetter")
    assert isinstance(dead_letter["original"], bytes)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        pytest.param("Gate", KeyError, id="unknown record name"),
        pytest.param("gatescan", KeyError, id="record names are case-sensitive"),
    ],
)
def test_unknown_record_name_is_a_key_error(name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        contract.schema(name)
    with pytest.raises(error):
        contract.examples(name)


def test_schema_returns_a_copy() -> None:
    contract.schema("GateScan")["fields"].clear()
    assert contract.schema("GateScan")["fields"]
