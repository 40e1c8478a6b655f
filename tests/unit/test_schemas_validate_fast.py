"""The hot records' one-expression validators accept exactly what the full checks accept, and
fail with the same detail: every field of every example is set to each value of a table of
awkward values (valid, invalid, wrong types, boundaries) and both validators must agree."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from schemas import InvalidEvent, contract
from schemas import validate as V


class _Str(str):
    """A str subclass: the checks want exactly ``str``."""


class _Int(int):
    pass


AWKWARD: tuple[Any, ...] = (
    None,
    "",
    " ",
    "\t\n",
    "x",
    "ok-token-0001",
    "9f8adcb4-6766-5872-aecc-5d29c01e630f",
    "9F8ADCB4-6766-5872-AECC-5D29C01E630F",
    "9f8adcb4-6766-5872-aecc-5d29c01e630",
    _Str("9f8adcb4-6766-5872-aecc-5d29c01e630f"),
    "91350100M000100Y43",
    "91350100M000100I43",
    _Str("91350100M000100Y43"),
    "11010519491231002X",
    "13812345678",
    "+8613812345678",
    "8613812345678",
    "京A12345",
    "e0e6d159a2eb03424237c69b78eb7bd2",
    0,
    -1,
    1,
    True,
    False,
    _Int(1_600_000_000_000),
    36.6,
    19.999,
    20.0,
    50.0,
    50.0001,
    -60.0,
    70.0,
    70.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    37,
    V.MIN_TIME_MS - 1,
    V.MIN_TIME_MS,
    V.MAX_TIME_MS - 1,
    V.MAX_TIME_MS,
    float(V.MIN_TIME_MS),
    V.MIN_DAY - 1,
    V.MIN_DAY,
    V.MAX_DAY - 1,
    V.MAX_DAY,
    [],
    ["FEVER"],
    ["FEVER", "FEVER"],
    ["FEVER", "COUGH"],
    ("FEVER",),
    [["unhashable"]],
    {"a": 1},
    b"bytes",
)

HOT = {
    "GateScan": (V.validate_gate_scan, V._check_gate_scan),
    "TemperatureReading": (V.validate_temperature_reading, V._check_temperature_reading),
    "HealthReport": (V.validate_health_report, V._check_health_report),
    "GateDecision": (V.validate_gate_decision, V._check_gate_decision),
    "Alert": (V.validate_alert, V._check_alert),
}


def _outcome(check: Callable[[Any], None], datum: dict[str, Any]) -> tuple[str, str]:
    try:
        check(datum)
    except InvalidEvent as err:
        return err.reason, err.detail
    except (KeyError, TypeError) as err:  # the full checks' own failures on odd datums
        return type(err).__name__, str(err)
    return "valid", ""


def _cases(name: str) -> list[dict[str, Any]]:
    cases = []
    for example in contract.examples(name):
        cases.append(dict(example))
        for field, value in itertools.product(example, AWKWARD):
            cases.append({**example, field: value})
        for field in example:  # a missing field
            cases.append({k: v for k, v in example.items() if k != field})
        # two bad fields at once: the first one in check order is reported
        cases.append({**example, "community_id": "", "event_time": 0})
    return cases


@pytest.mark.parametrize("name", list(HOT))
def test_fast_validator_agrees_with_the_full_checks(name: str) -> None:
    fast, full = HOT[name]
    outcomes = set()
    for datum in _cases(name):
        V._known_communities.clear()
        want = _outcome(full, datum)
        assert _outcome(fast, datum) == want, datum
        assert _outcome(fast, datum) == want, datum  # again, with its community remembered
        outcomes.add(want[0])
    assert {"valid", "invalid_value", "KeyError"} <= outcomes


def test_remembered_community_ids_are_bounded() -> None:
    V._known_communities.clear()
    try:
        V._known_communities.update(f"{i:018d}" for i in range(V._KNOWN_COMMUNITIES_MAX))
        assert V._community_seen("91350100M000100Y43")
        assert len(V._known_communities) == V._KNOWN_COMMUNITIES_MAX
    finally:
        V._known_communities.clear()
