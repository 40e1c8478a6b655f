"""Single-object codec: wire format, fingerprints, dead-letter reasons, value checks, interop."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest

from fangxian.core.codes import credit_code_check_ok
from schemas import Codec, InvalidEvent, contract
from schemas.codec import HEADER_SIZE, MARKER, canonical_form, fingerprint, strip_logical_types

# --- an independent CRC-64-AVRO, written from the Avro specification -----------------------

_EMPTY64 = 0xC15D213AA4D7A795


def _spec_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _spec_table()


def spec_fingerprint(canonical: str) -> bytes:
    fp = _EMPTY64
    for byte in canonical.encode("utf-8"):
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")  # Avro single-object encoding: little-endian


def as_signed_long(fp: bytes) -> int:
    return int.from_bytes(fp, "little", signed=True)


@pytest.mark.parametrize(
    ("canonical", "published"),
    [
        pytest.param('"null"', 7195948357588979594, id="null"),
        pytest.param('"boolean"', -6970731678124411036, id="boolean"),
        pytest.param('"int"', 8247732601305521295, id="int"),
        pytest.param('"long"', -3434872931120570953, id="long"),
        pytest.param('{"name":"foo","type":"fixed","size":15}', 1756455273707447556, id="fixed"),
    ],
)
def test_spec_fingerprint_matches_avro_published_vectors(canonical: str, published: int) -> None:
    # Vectors from Apache Avro's share/test/data/schema-tests.txt (Java signed longs).
    assert as_signed_long(spec_fingerprint(canonical)) == published


def test_codec_fingerprint_matches_a_published_record_vector() -> None:
    record = {"type": "record", "name": "foo", "fields": [{"name": "f1", "type": "boolean"}]}
    assert as_signed_long(fingerprint(record)) == 7843277075252814651


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_fingerprint_agrees_with_the_spec_and_the_avro_package(name: str) -> None:
    schema = contract.schema(name)
    # The avro package keeps {"type": "long"} for a logical type where the spec's
    # [PRIMITIVES] step (and Java, fastavro) write "long", so compare without logical types.
    official = avro.schema.parse(json.dumps(strip_logical_types(schema)))
    assert canonical_form(schema) == official.canonical_form
    assert fingerprint(schema) == spec_fingerprint(canonical_form(schema))
    assert fingerprint(schema) == official.fingerprint("CRC-64-AVRO")
    assert Codec().fingerprint(name) == fingerprint(schema)


def test_messages_fingerprinted_by_the_avro_package_are_accepted_too() -> None:
    schema = contract.schema("GateScan")
    avro_package_fp = avro.schema.parse(json.dumps(schema)).fingerprint("CRC-64-AVRO")
    assert avro_package_fp != fingerprint(schema)  # its canonical form keeps logical types
    message = MARKER + avro_package_fp + GOOD[HEADER_SIZE:]
    codec = Codec()
    assert codec.decode("GateScan", message) == SCAN
    assert codec.decode("GateScan", message) == SCAN  # again, from the cached plan


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_logical_types_do_not_change_the_fingerprint(name: str) -> None:
    schema = contract.schema(name)
    assert fingerprint(strip_logical_types(schema)) == fingerprint(schema)


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_message_is_marker_then_fingerprint_then_body(name: str) -> None:
    codec = Codec()
    payload = codec.encode(name, contract.examples(name)[0])
    assert payload[:2] == b"\xc3\x01"
    assert payload[2:HEADER_SIZE] == fingerprint(contract.schema(name))
    assert len(payload) > HEADER_SIZE


def test_decoded_times_and_dates_are_plain_ints() -> None:
    codec = Codec()
    for name in ("HealthReport", "Resident", "VisitorPass", "Vehicle"):
        decoded = codec.decode(name, codec.encode(name, contract.examples(name)[0]))
        for value in decoded.values():
            assert not isinstance(value, dt.date | dt.datetime), name


def test_encode_fills_defaults_for_omitted_fields() -> None:
    codec = Codec()
    rules = codec.decode(
        "CommunityRules", codec.encode("CommunityRules", {"community_id": "91350100M000100Y43"})
    )
    assert rules == {
        "community_id": "91350100M000100Y43",
        **contract.field_defaults("CommunityRules"),
    }


# --- dead-letter reasons --------------------------------------------------------------------

SCAN = contract.named_examples("GateScan")["GateScan.resident_qr"]
READING = contract.examples("TemperatureReading")[0]


def _scan_payload(**changes: Any) -> bytes:
    return Codec().encode("GateScan", {**SCAN, **changes})


def _with_raw_body(record: str, datum: dict[str, Any]) -> bytes:
    """A message whose body skips the codec's value checks (a misbehaving producer)."""
    schema = fastavro.parse_schema(strip_logical_types(contract.schema(record)))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, datum)
    return MARKER + fingerprint(contract.schema(record)) + body.getvalue()


GOOD = _scan_payload()

DEAD_LETTER_CASES = [
    pytest.param(b"", "empty", id="empty payload"),
    pytest.param(b'{"event_id": "x"}', "bad_marker", id="JSON instead of Avro"),
    pytest.param(b"\xc3\x00" + GOOD[2:], "bad_marker", id="wrong marker second byte"),
    pytest.param(GOOD[HEADER_SIZE:], "bad_marker", id="bare Avro body without header"),
    pytest.param(b"\xc3", "truncated", id="half a marker"),
    pytest.param(GOOD[:7], "truncated", id="header cut inside the fingerprint"),
    pytest.param(GOOD[:HEADER_SIZE], "truncated", id="header without body"),
    pytest.param(GOOD[:-1], "truncated", id="body missing its last byte"),
    pytest.param(GOOD + b"\x00", "schema_mismatch", id="one trailing byte"),
    pytest.param(GOOD + b"garbage", "schema_mismatch", id="trailing garbage"),
    pytest.param(
        MARKER + b"\x01\x02\x03\x04\x05\x06\x07\x08" + GOOD[HEADER_SIZE:],
        "unknown_fingerprint",
        id="unknown fingerprint",
    ),
    pytest.param(Codec().encode("TemperatureReading", READING), "wrong_record", id="wrong record"),
    pytest.param(
        GOOD[:HEADER_SIZE] + b"\x48" + b"\xff" * 36 + GOOD[HEADER_SIZE + 37 :],
        "schema_mismatch",
        id="event_id is not UTF-8",
    ),
    pytest.param(
        _with_raw_body("GateScan", {**SCAN, "event_id": "not-a-uuid"}),
        "invalid_value",
        id="event_id is not a UUID",
    ),
    pytest.param(
        _with_raw_body("GateScan", {**SCAN, "temperature_c": float("nan")}),
        "invalid_value",
        id="NaN temperature",
    ),
    pytest.param(
        _with_raw_body("GateScan", {**SCAN, "event_time": SCAN["event_time"] // 1000}),
        "invalid_value",
        id="event_time in seconds",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), DEAD_LETTER_CASES)
def test_bad_message_raises_invalid_event_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        Codec().decode("GateScan", payload)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_reader_errors_are_chained() -> None:
    with pytest.raises(InvalidEvent) as caught:
        Codec().decode("GateScan", GOOD[:-3])
    assert caught.value.__cause__ is not None


def test_invalid_event_carries_reason_and_detail() -> None:
    error = InvalidEvent("truncated", "body ends early")
    assert (error.reason, error.detail, str(error)) == (
        "truncated",
        "body ends early",
        "truncated: body ends early",
    )


def test_every_cut_of_a_valid_message_is_truncated() -> None:
    codec = Codec()
    reasons = set()
    for cut in range(1, len(GOOD)):
        with pytest.raises(InvalidEvent) as caught:
            codec.decode("GateScan", GOOD[:cut])
        reasons.add(caught.value.reason)
    assert reasons == {"truncated"}


def test_random_bodies_only_ever_raise_invalid_event() -> None:
    codec = Codec()
    rng = random.Random(20200215)
    outcomes = set()
    for _ in range(2000):
        body = rng.randbytes(rng.randint(0, 120))
        try:
            codec.decode("GateScan", GOOD[:HEADER_SIZE] + body)
            outcomes.add("decoded")
        except InvalidEvent as error:
            outcomes.add(error.reason)
    assert outcomes <= {"truncated", "schema_mismatch", "invalid_value", "decoded"}
    assert {"truncated", "schema_mismatch"} <= outcomes


def test_unknown_record_name_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        Codec().decode("GateScans", GOOD)
    with pytest.raises(KeyError):
        Codec().encode("GateScans", SCAN)


def test_writer_record_name_reads_only_the_header() -> None:
    codec = Codec()
    assert codec.writer_record_name(GOOD) == "fangxian.v1.GateScan"
    with pytest.raises(InvalidEvent, match="unknown_fingerprint"):
        codec.writer_record_name(MARKER + bytes(8))


# --- value checks (decode and encode apply the same ones) ------------------------------------

VALID_BUT_FAILS_CHECK_CHARACTER = "91350100M000100Y44"

INVALID_SCANS = [
    pytest.param({"event_id": "9f8adcb4676658"}, "event_id", id="event_id too short"),
    pytest.param(
        {"event_id": "948ADCB4-6766-5872-AECC-5D29C01E630F"}, "event_id", id="upper-case UUID"
    ),
    pytest.param({"event_id": "{948adcb4-6766-5872-aecc-5d29c01e630f}"}, "event_id", id="braced"),
    pytest.param({"community_id": "91350100M000100Y4"}, "community_id", id="17-char community"),
    pytest.param({"community_id": "91350100M000100I43"}, "community_id", id="letter I in code"),
    pytest.param({"community_id": "91350100m000100y43"}, "community_id", id="lower-case code"),
    pytest.param({"gate_id": ""}, "gate_id", id="empty gate_id"),
    pytest.param({"device_id": "   "}, "device_id", id="blank device_id"),
    pytest.param({"subject_id": "11010519491231002X"}, "subject_id", id="raw resident ID"),
    pytest.param({"subject_id": "13812345678"}, "subject_id", id="raw mobile number"),
    pytest.param({"subject_id": "+8613812345678"}, "subject_id", id="raw mobile with +86"),
    pytest.param({"subject_id": "京A12345"}, "subject_id", id="raw plate"),
    pytest.param({"household_id": ""}, "household_id", id="empty household_id"),
    pytest.param({"temperature_c": float("nan")}, "temperature_c", id="NaN temperature"),
    pytest.param({"temperature_c": float("inf")}, "temperature_c", id="infinite temperature"),
    pytest.param({"temperature_c": 98.6}, "temperature_c", id="Fahrenheit temperature"),
    pytest.param({"temperature_c": 12.0}, "temperature_c", id="temperature below 20 C"),
    pytest.param({"event_time": 1_581_726_600}, "event_time", id="event_time in seconds"),
    pytest.param({"event_time": 1_581_726_600_000_000}, "event_time", id="event_time in us"),
    pytest.param({"event_time": 1_546_300_799_999}, "event_time", id="event_time before 2019"),
    pytest.param({"event_time": 1_581_726_600_000.0}, "event_time", id="float event_time"),
]


@pytest.mark.parametrize(("changes", "field"), INVALID_SCANS)
def test_invalid_scan_value_is_rejected_on_encode(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        Codec().encode("GateScan", {**SCAN, **changes})
    assert caught.value.reason == "invalid_value"
    assert field in caught.value.detail


@pytest.mark.parametrize(
    ("changes", "field"),
    [change for change in INVALID_SCANS if change.id != "float event_time"],
)
def test_invalid_scan_value_is_rejected_on_decode(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        Codec().decode("GateScan", _with_raw_body("GateScan", {**SCAN, **changes}))
    assert caught.value.reason == "invalid_value"
    assert field in caught.value.detail


def test_raw_personal_data_is_not_echoed_in_the_detail() -> None:
    with pytest.raises(InvalidEvent) as caught:
        Codec().encode("GateScan", {**SCAN, "subject_id": "11010519491231002X"})
    assert "11010519491231002X" not in caught.value.detail


EDGE_VALID_SCANS = [
    pytest.param({"temperature_c": 20.0}, id="20 C is sane (cold infrared)"),
    pytest.param({"temperature_c": 50.0}, id="50 C is sane (the rules flag it)"),
    pytest.param({"temperature_c": 37}, id="integer temperature"),
    pytest.param({"temperature_c": None}, id="no thermometer"),
    pytest.param({"household_id": None}, id="no household"),
    pytest.param({"community_id": VALID_BUT_FAILS_CHECK_CHARACTER}, id="failing check char"),
    pytest.param({"event_time": 1_546_300_800_000}, id="event_time at 2019-01-01"),
]


@pytest.mark.parametrize("changes", EDGE_VALID_SCANS)
def test_edge_values_are_accepted(changes: dict[str, Any]) -> None:
    codec = Codec()
    decoded = codec.decode("GateScan", codec.encode("GateScan", {**SCAN, **changes}))
    assert decoded == {**SCAN, **changes}


INVALID_OTHER_RECORDS = [
    pytest.param("HealthReport", {"symptoms": ["FEVER", "FEVER"]}, "symptoms", id="dup symptom"),
    pytest.param("HealthReport", {"report_date": 1_581_726_600_000}, "report_date", id="ms date"),
    pytest.param("TemperatureReading", {"temperature_c": float("nan")}, "temperature_c", id="NaN"),
    pytest.param("TemperatureReading", {"ambient_c": float("-inf")}, "ambient_c", id="-inf air"),
    pytest.param("Alert", {"alert_id": "fever-1"}, "alert_id", id="alert_id not a UUID"),
    pytest.param("Alert", {"message_zh": ""}, "message_zh", id="empty Chinese message"),
    pytest.param("GateDecision", {"decided_at": 0}, "decided_at", id="decided_at zero"),
    pytest.param("VisitorPass", {"valid_until": 1_581_726_599_999}, "valid_until", id="ends first"),
    pytest.param("VisitorPass", {"max_entries": -1}, "max_entries", id="negative entries"),
    pytest.param("Resident", {"key_groups": ["ELDERLY", "ELDERLY"]}, "key_groups", id="dup group"),
    pytest.param("Vehicle", {"vehicle_id": "粤B12345"}, "vehicle_id", id="raw plate as id"),
    pytest.param("CommunityRules", {"timezone": "Mars/Olympus"}, "timezone", id="bad tz"),
    pytest.param(
        "CommunityRules", {"plausible_min_c": 43.0}, "plausible_min_c", id="empty plausible band"
    ),
    pytest.param(
        "CommunityRules",
        {"curfew_start_minute": 1320, "curfew_end_minute": None},
        "curfew_end_minute",
        id="curfew without an end",
    ),
    pytest.param(
        "CommunityRules", {"report_deadline_minute": 1440}, "report_deadline_minute", id="24:00"
    ),
    pytest.param("CommunityRules", {"recheck_window_s": 0}, "recheck_window_s", id="no window"),
]


@pytest.mark.parametrize(("record", "changes", "field"), INVALID_OTHER_RECORDS)
def test_invalid_values_of_other_records_are_rejected(
    record: str, changes: dict[str, Any], field: str
) -> None:
    datum = {**contract.examples(record)[0], **changes}
    with pytest.raises(InvalidEvent) as caught:
        Codec().encode(record, datum)
    assert (caught.value.reason, field in caught.value.detail) == ("invalid_value", True)
    with pytest.raises(InvalidEvent) as caught:
        Codec().decode(record, _with_raw_body(record, datum))
    assert caught.value.reason == "invalid_value"


@pytest.mark.parametrize(
    "datum",
    [
        pytest.param({**SCAN, "direction": "UP"}, id="unknown enum symbol"),
        pytest.param({**SCAN, "temprature_c": 36.5}, id="misspelt extra field"),
        pytest.param({k: v for k, v in SCAN.items() if k != "method"}, id="missing field"),
        pytest.param({k: v for k, v in SCAN.items() if k != "event_id"}, id="missing event_id"),
        pytest.param({**SCAN, "face_consent": "yes"}, id="string for a boolean"),
    ],
)
def test_encode_rejects_a_datum_that_does_not_fit_the_schema(datum: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as caught:
        Codec().encode("GateScan", datum)
    assert caught.value.reason == "invalid_value"


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        pytest.param("91350100M000100Y43", True, id="NOTES example"),
        pytest.param(VALID_BUT_FAILS_CHECK_CHARACTER, False, id="wrong check character"),
        pytest.param("91350100M000100Y4", False, id="17 characters"),
        pytest.param("91350100M000100I43", False, id="letter outside the alphabet"),
    ],
)
def test_credit_code_check_character(code: str, ok: bool) -> None:
    assert credit_code_check_ok(code) is ok


# --- interop with the official avro package --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        pytest.param(name, payload, id=stem)
        for name in contract.RECORD_NAMES
        for stem, payload in contract.named_examples(name).items()
    ],
)
def test_avro_package_reads_what_the_codec_writes(name: str, payload: dict[str, Any]) -> None:
    message = Codec().encode(name, payload)
    schema = avro.schema.parse(json.dumps(strip_logical_types(contract.schema(name))))
    assert message[2:HEADER_SIZE] == schema.fingerprint("CRC-64-AVRO")
    reader = avro.io.DatumReader(schema, schema)
    body = io.BytesIO(message[HEADER_SIZE:])
    assert reader.read(avro.io.BinaryDecoder(body)) == payload
    assert body.tell() == len(message) - HEADER_SIZE


def test_avro_package_reads_timestamps_with_logical_types() -> None:
    message = Codec().encode("GateScan", SCAN)
    schema = avro.schema.parse(json.dumps(contract.schema("GateScan")))
    datum = avro.io.DatumReader(schema).read(
        avro.io.BinaryDecoder(io.BytesIO(message[HEADER_SIZE:]))
    )
    assert isinstance(datum, dict)
    assert datum["event_time"] == dt.datetime.fromtimestamp(SCAN["event_time"] / 1000, tz=dt.UTC)


@pytest.mark.parametrize("name", contract.RECORD_NAMES)
def test_codec_reads_what_the_avro_package_writes(name: str) -> None:
    payload = contract.examples(name)[0]
    schema = avro.schema.parse(json.dumps(strip_logical_types(contract.schema(name))))
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(payload, avro.io.BinaryEncoder(body))
    message = MARKER + schema.fingerprint("CRC-64-AVRO") + body.getvalue()
    assert Codec().decode(name, message) == payload
