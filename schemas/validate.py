"""Pure value checks the codec applies to every record it decodes or encodes.

The Avro schema fixes types; these checks fix values a schema cannot express: ids that must be
canonical UUIDs, community codes over the GB 32100 alphabet, temperatures that are finite and
physically possible, event times in milliseconds (not seconds or microseconds), pseudonymous
tokens that are not raw ID numbers or phone numbers. A failed check raises
``InvalidEvent("invalid_value", detail)`` with the field named in ``detail``.

Thresholds that are policy rather than physics (the 34–43 °C plausible band, 37.3 °C fever) are
rules in ``CommunityRules``, not validation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fangxian.core.codes import credit_code_format_ok
from schemas.contract import MAX_ENTRY_LIMIT_WINDOW_S
from schemas.errors import INVALID_VALUE, InvalidEvent

Datum = Mapping[str, Any]
Validator = Callable[[Datum], None]

# 2019-01-01T00:00:00Z and 2100-01-01T00:00:00Z in epoch milliseconds. The lower bound rejects
# seconds sent as milliseconds; the upper bound rejects microseconds. Pure: no clock is read.
MIN_TIME_MS: Final = 1_546_300_800_000
MAX_TIME_MS: Final = 4_102_444_800_000
# The same bounds in days since 1970-01-01, for `date` fields.
MIN_DAY: Final = 17_897
MAX_DAY: Final = 47_482

# Physically possible readings of a human body thermometer (°C). Outside this the reading is
# garbage, not a cold or a fever; the narrower plausible band is a community rule.
BODY_MIN_C: Final = 20.0
BODY_MAX_C: Final = 50.0
AMBIENT_MIN_C: Final = -60.0
AMBIENT_MAX_C: Final = 70.0

MINUTES_PER_DAY: Final = 1440

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# What a pseudonymous token must never look like: a resident ID number (GB 11643) or a
# mainland mobile number (optionally +86). Non-ASCII text (a raw plate such as 京A12345, a
# name) is refused separately. Only strings of these lengths need the regex.
_RAW_ID_OR_PHONE = re.compile(r"\d{17}[\dXx]|(?:\+?86)?1\d{10}")
_RAW_ID_OR_PHONE_LENGTHS: Final = frozenset({11, 13, 14, 18})
_NUMBER_TYPES: Final = (float, int)


def _invalid(field: str, problem: str, value: object) -> InvalidEvent:
    return InvalidEvent(INVALID_VALUE, f"{field} {problem} (got {value!r:.60})")


def require_uuid(value: object, field: str) -> None:
    """A canonical (lower-case, hyphenated) UUID string: one spelling per idempotency key."""
    if type(value) is not str or _UUID.fullmatch(value) is None:
        raise _invalid(field, "is not a canonical lower-case UUID string", value)


def require_community_id(value: object, field: str = "community_id") -> None:
    """18 characters of the GB 32100 alphabet, county part all digits
    (``fangxian.core.codes.credit_code_format_ok``); the check character is not enforced."""
    if type(value) is not str or not credit_code_format_ok(value):
        raise _invalid(field, "is not an 18-character GB 32100 credit code", value)


def require_id(value: object, field: str) -> None:
    """A non-empty, non-blank identifier (gate, device, dead letter, ...)."""
    if type(value) is not str or not value or value.isspace():
        raise _invalid(field, "must be a non-empty string", value)


def require_token(value: object, field: str) -> None:
    """A pseudonymous token: non-empty and not a raw ID number, phone number or plate."""
    if type(value) is not str or not value or value.isspace():
        raise _invalid(field, "must be a non-empty string", value)
    if not value.isascii() or (
        len(value) in _RAW_ID_OR_PHONE_LENGTHS and _RAW_ID_OR_PHONE.fullmatch(value) is not None
    ):
        # Do not echo the value: it looks like personal data.
        raise InvalidEvent(
            INVALID_VALUE, f"{field} looks like raw personal data, not a pseudonymous token"
        )


def require_optional_token(value: object, field: str) -> None:
    if value is not None:
        require_token(value, field)


def require_time_ms(value: object, field: str) -> None:
    """An ``int`` epoch-millisecond timestamp between 2019-01-01 and 2100-01-01 (UTC)."""
    if type(value) is not int or not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise _invalid(field, "is not epoch milliseconds between 2019 and 2100", value)


def require_optional_time_ms(value: object, field: str) -> None:
    if value is not None:
        require_time_ms(value, field)


def require_day(value: object, field: str) -> None:
    """An ``int`` day number (days since 1970-01-01) between 2019-01-01 and 2100-01-01."""
    if type(value) is not int or not MIN_DAY <= value < MAX_DAY:
        raise _invalid(field, "is not a day number between 2019 and 2100", value)


def _require_celsius(value: object, field: str, low: float, high: float) -> None:
    # NaN and ±inf fail the chained comparison too, so one test covers "finite" and "sane".
    if type(value) is not float and type(value) is not int:
        raise _invalid(field, "must be a number of degrees Celsius", value)
    if not low <= value <= high:
        if not math.isfinite(value):
            raise _invalid(field, "must be a finite number", value)
        raise _invalid(field, f"must be a number of degrees Celsius in [{low}, {high}]", value)


def require_body_celsius(value: object, field: str) -> None:
    _require_celsius(value, field, BODY_MIN_C, BODY_MAX_C)


def require_optional_body_celsius(value: object, field: str) -> None:
    if value is not None:
        _require_celsius(value, field, BODY_MIN_C, BODY_MAX_C)


def require_optional_ambient_celsius(value: object, field: str) -> None:
    if value is not None:
        _require_celsius(value, field, AMBIENT_MIN_C, AMBIENT_MAX_C)


def require_int_at_least(value: object, field: str, low: int) -> None:
    if type(value) is not int or value < low:
        raise _invalid(field, f"must be an integer >= {low}", value)


def require_minute_of_day(value: object, field: str) -> None:
    if type(value) is not int or not 0 <= value < MINUTES_PER_DAY:
        raise _invalid(field, "must be a minute of the day in [0, 1439]", value)


def require_unique(values: object, field: str) -> None:
    if not isinstance(values, list | tuple) or len(set(values)) != len(values):
        raise _invalid(field, "must be a list without duplicates", values)


def require_timezone(value: object, field: str) -> None:
    if type(value) is not str:
        raise _invalid(field, "is not an IANA time zone name", value)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise _invalid(field, "is not an IANA time zone name", value) from err


# --- one validator per record -------------------------------------------------------------


def _check_gate_scan(d: Datum) -> None:
    require_uuid(d["event_id"], "event_id")
    require_community_id(d["community_id"])
    require_id(d["gate_id"], "gate_id")
    require_id(d["device_id"], "device_id")
    require_token(d["subject_id"], "subject_id")
    require_optional_token(d["household_id"], "household_id")
    require_optional_body_celsius(d["temperature_c"], "temperature_c")
    require_time_ms(d["event_time"], "event_time")


def _check_temperature_reading(d: Datum) -> None:
    require_uuid(d["event_id"], "event_id")
    require_community_id(d["community_id"])
    require_id(d["gate_id"], "gate_id")
    require_id(d["device_id"], "device_id")
    require_optional_token(d["subject_id"], "subject_id")
    require_body_celsius(d["temperature_c"], "temperature_c")
    require_optional_ambient_celsius(d["ambient_c"], "ambient_c")
    require_time_ms(d["event_time"], "event_time")


def _check_health_report(d: Datum) -> None:
    require_uuid(d["event_id"], "event_id")
    require_community_id(d["community_id"])
    require_token(d["resident_id"], "resident_id")
    require_day(d["report_date"], "report_date")
    require_optional_body_celsius(d["temperature_c"], "temperature_c")
    require_unique(d["symptoms"], "symptoms")
    require_time_ms(d["event_time"], "event_time")


def _check_gate_decision(d: Datum) -> None:
    require_uuid(d["event_id"], "event_id")
    require_community_id(d["community_id"])
    require_id(d["gate_id"], "gate_id")
    if d["subject_id"] != "":  # empty: a refused FACE scan keeps no face-derived identity
        require_token(d["subject_id"], "subject_id")
    require_time_ms(d["decided_at"], "decided_at")


def _check_alert(d: Datum) -> None:
    require_uuid(d["alert_id"], "alert_id")
    require_community_id(d["community_id"])
    require_optional_token(d["subject_id"], "subject_id")
    require_id(d["message_zh"], "message_zh")
    require_id(d["message_en"], "message_en")
    require_time_ms(d["event_time"], "event_time")
    require_time_ms(d["created_at"], "created_at")


# --- the hot records: one expression for the valid case, the checks above to say what is wrong
#
# Each ``validate_*`` below first evaluates, inline, a condition that holds only if every check
# of its ``_check_*`` passes (never more permissive). Only when it does not hold — or a field is
# missing or of an unhashable type — does it run the ``_check_*`` function, which raises the
# first failure exactly as before. Community ids are few: one that passed the GB 32100 pattern
# once is remembered (up to ``_KNOWN_COMMUNITIES_MAX``), so it costs a set lookup after that.

_KNOWN_COMMUNITIES_MAX: Final = 65_536
_known_communities: set[str] = set()
_uuid_match = _UUID.fullmatch
_raw_match = _RAW_ID_OR_PHONE.fullmatch


def _community_seen(value: str) -> bool:
    """True if ``value`` (a ``str``) is a well-formed community id; remembers it."""
    if not credit_code_format_ok(value):
        return False
    if len(_known_communities) < _KNOWN_COMMUNITIES_MAX:
        _known_communities.add(value)
    return True


def validate_gate_scan(d: Datum) -> None:
    try:
        v = d["event_id"]
        if type(v) is str and _uuid_match(v) is not None:
            v = d["community_id"]
            if type(v) is str and (v in _known_communities or _community_seen(v)):
                v = d["gate_id"]
                w = d["device_id"]
                t = d["subject_id"]
                h = d["household_id"]
                c = d["temperature_c"]
                e = d["event_time"]
                if (
                    type(v) is str
                    and v
                    and not v.isspace()
                    and type(w) is str
                    and w
                    and not w.isspace()
                    and type(t) is str
                    and t
                    and not t.isspace()
                    and t.isascii()
                    and (len(t) not in _RAW_ID_OR_PHONE_LENGTHS or _raw_match(t) is None)
                    and (
                        h is None
                        or (
                            type(h) is str
                            and h
                            and not h.isspace()
                            and h.isascii()
                            and (len(h) not in _RAW_ID_OR_PHONE_LENGTHS or _raw_match(h) is None)
                        )
                    )
                    and (
                        c is None
                        or ((type(c) is float or type(c) is int) and BODY_MIN_C <= c <= BODY_MAX_C)
                    )
                    and type(e) is int
                    and MIN_TIME_MS <= e < MAX_TIME_MS
                ):
                    return
    except (KeyError, TypeError):
        pass
    _check_gate_scan(d)


def validate_temperature_reading(d: Datum) -> None:
    try:
        v = d["event_id"]
        if type(v) is str and _uuid_match(v) is not None:
            v = d["community_id"]
            if type(v) is str and (v in _known_communities or _community_seen(v)):
                v = d["gate_id"]
                w = d["device_id"]
                t = d["subject_id"]
                c = d["temperature_c"]
                a = d["ambient_c"]
                e = d["event_time"]
                if (
                    type(v) is str
                    and v
                    and not v.isspace()
                    and type(w) is str
                    and w
                    and not w.isspace()
                    and (
                        t is None
                        or (
                            type(t) is str
                            and t
                            and not t.isspace()
                            and t.isascii()
                            and (len(t) not in _RAW_ID_OR_PHONE_LENGTHS or _raw_match(t) is None)
                        )
                    )
                    and (type(c) is float or type(c) is int)
                    and BODY_MIN_C <= c <= BODY_MAX_C
                    and (
                        a is None
                        or (
                            (type(a) is float or type(a) is int)
                            and AMBIENT_MIN_C <= a <= AMBIENT_MAX_C
                        )
                    )
                    and type(e) is int
                    and MIN_TIME_MS <= e < MAX_TIME_MS
                ):
                    return
    except (KeyError, TypeError):
        pass
    _check_temperature_reading(d)


def validate_health_report(d: Datum) -> None:
    try:
        v = d["event_id"]
        if type(v) is str and _uuid_match(v) is not None:
            v = d["community_id"]
            if type(v) is str and (v in _known_communities or _community_seen(v)):
                r = d["resident_id"]
                day = d["report_date"]
                c = d["temperature_c"]
                symptoms = d["symptoms"]
                e = d["event_time"]
                if (
                    type(r) is str
                    and r
                    and not r.isspace()
                    and r.isascii()
                    and (len(r) not in _RAW_ID_OR_PHONE_LENGTHS or _raw_match(r) is None)
                    and type(day) is int
                    and MIN_DAY <= day < MAX_DAY
                    and (
                        c is None
                        or ((type(c) is float or type(c) is int) and BODY_MIN_C <= c <= BODY_MAX_C)
                    )
                    and type(symptoms) is list
                    and (not symptoms or len(set(symptoms)) == len(symptoms))
                    and type(e) is int
                    and MIN_TIME_MS <= e < MAX_TIME_MS
                ):
                    return
    except (KeyError, TypeError):
        pass
    _check_health_report(d)


def validate_gate_decision(d: Datum) -> None:
    try:
        v = d["event_id"]
        if type(v) is str and _uuid_match(v) is not None:
            v = d["community_id"]
            if type(v) is str and (v in _known_communities or _community_seen(v)):
                g = d["gate_id"]
                t = d["subject_id"]
                e = d["decided_at"]
                if (
                    type(g) is str
                    and g
                    and not g.isspace()
                    and (
                        t == ""
                        or (
                            type(t) is str
                            and t
                            and not t.isspace()
                            and t.isascii()
                            and (len(t) not in _RAW_ID_OR_PHONE_LENGTHS or _raw_match(t) is None)
                        )
                    )
                    and type(e) is int
                    and MIN_TIME_MS <= e < MAX_TIME_MS
                ):
                    return
    except (KeyError, TypeError):
        pass
    _check_gate_decision(d)


def validate_alert(d: Datum) -> None:
    try:
        v = d["alert_id"]
        if type(v) is str and _uuid_match(v) is not None:
            v = d["community_id"]
            if type(v) is str and (v in _known_communities or _community_seen(v)):
                t = d["subject_id"]
                zh = d["message_zh"]
                en = d["message_en"]
                e = d["event_time"]
                c = d["created_at"]
                if (
                    (
                        t is None
                        or (
                            type(t) is str
                            and t
                            and not t.isspace()
                            and t.isascii()
                            and (len(t) not in _RAW_ID_OR_PHONE_LENGTHS or _raw_match(t) is None)
                        )
                    )
                    and type(zh) is str
                    and zh
                    and not zh.isspace()
                    and type(en) is str
                    and en
                    and not en.isspace()
                    and type(e) is int
                    and MIN_TIME_MS <= e < MAX_TIME_MS
                    and type(c) is int
                    and MIN_TIME_MS <= c < MAX_TIME_MS
                ):
                    return
    except (KeyError, TypeError):
        pass
    _check_alert(d)


def validate_dead_letter(d: Datum) -> None:
    require_id(d["dead_letter_id"], "dead_letter_id")
    require_id(d["reason"], "reason")
    require_id(d["source_topic"], "source_topic")
    require_time_ms(d["created_at"], "created_at")


def validate_resident(d: Datum) -> None:
    require_token(d["resident_id"], "resident_id")
    require_community_id(d["community_id"])
    require_token(d["household_id"], "household_id")
    observation_start = d["observation_start"]
    if observation_start is not None:
        require_day(observation_start, "observation_start")
    require_unique(d["key_groups"], "key_groups")
    require_time_ms(d["updated_at"], "updated_at")


def validate_visitor_pass(d: Datum) -> None:
    require_token(d["pass_id"], "pass_id")
    require_community_id(d["community_id"])
    require_token(d["host_resident_id"], "host_resident_id")
    require_time_ms(d["valid_from"], "valid_from")
    require_time_ms(d["valid_until"], "valid_until")
    if d["valid_until"] < d["valid_from"]:
        raise _invalid("valid_until", "is before valid_from", d["valid_until"])
    require_int_at_least(d["max_entries"], "max_entries", 0)
    require_time_ms(d["updated_at"], "updated_at")


def validate_vehicle(d: Datum) -> None:
    require_token(d["vehicle_id"], "vehicle_id")
    require_community_id(d["community_id"])
    require_optional_token(d["owner_resident_id"], "owner_resident_id")
    require_optional_time_ms(d["valid_until"], "valid_until")
    require_time_ms(d["updated_at"], "updated_at")


_RULE_THRESHOLDS_C: Final = ("fever_threshold_c", "plausible_min_c", "plausible_max_c")
_RULE_POSITIVE_INTS: Final = (
    "recheck_window_s",
    "entry_limit_count",
    "entry_limit_window_s",
    "dedupe_window_s",
    "observation_days",
    "device_silent_s",
    "drift_window_s",
)


def validate_community_rules(d: Datum) -> None:
    require_community_id(d["community_id"])
    require_timezone(d["timezone"], "timezone")
    for field in _RULE_THRESHOLDS_C:
        require_body_celsius(d[field], field)
    if not d["plausible_min_c"] < d["plausible_max_c"]:
        raise _invalid("plausible_min_c", "must be below plausible_max_c", d["plausible_min_c"])
    margin = d["drift_margin_c"]
    if not isinstance(margin, _NUMBER_TYPES) or isinstance(margin, bool) or not 0 <= margin <= 10:
        raise _invalid("drift_margin_c", "must be a number of degrees in [0, 10]", margin)
    for field in _RULE_POSITIVE_INTS:
        require_int_at_least(d[field], field, 1)
    if d["entry_limit_window_s"] > MAX_ENTRY_LIMIT_WINDOW_S:
        raise _invalid(
            "entry_limit_window_s",
            f"must be at most {MAX_ENTRY_LIMIT_WINDOW_S} s ({MAX_ENTRY_LIMIT_WINDOW_S // 86_400} "
            "days, the longest window whose pass history the rules keep)",
            d["entry_limit_window_s"],
        )
    require_int_at_least(d["alert_suppression_s"], "alert_suppression_s", 0)
    curfew_start, curfew_end = d["curfew_start_minute"], d["curfew_end_minute"]
    if (curfew_start is None) != (curfew_end is None):
        raise _invalid("curfew_end_minute", "must be set together with curfew_start_minute", None)
    if curfew_start is not None:
        require_minute_of_day(curfew_start, "curfew_start_minute")
        require_minute_of_day(curfew_end, "curfew_end_minute")
    require_minute_of_day(d["report_deadline_minute"], "report_deadline_minute")
    updated_at = d["updated_at"]
    # 0 is the schema default ("never updated"); anything else must be a real time.
    if updated_at != 0:
        require_time_ms(updated_at, "updated_at")


VALIDATORS: Final[Mapping[str, Validator]] = {
    "GateScan": validate_gate_scan,
    "TemperatureReading": validate_temperature_reading,
    "HealthReport": validate_health_report,
    "GateDecision": validate_gate_decision,
    "Alert": validate_alert,
    "DeadLetter": validate_dead_letter,
    "Resident": validate_resident,
    "VisitorPass": validate_visitor_pass,
    "Vehicle": validate_vehicle,
    "CommunityRules": validate_community_rules,
}


def validate(record_name: str, datum: Datum) -> None:
    """Check ``datum``'s values as record ``record_name``; raise ``InvalidEvent`` if invalid.

    ``datum`` must hold every field, defaulted ones included (a decoded record does; the codec
    fills schema defaults in before validating a record it encodes); a missing field is a
    ``KeyError``.
    """
    VALIDATORS[record_name](datum)
