"""FeverRecheck state machine and plausibility, as tables of reading sequences."""

from __future__ import annotations

import pytest

from streams.rules.config import DEFAULT_RULES, CommunityRules
from streams.rules.temperature import (
    CLEARED,
    CONFIRMED,
    HIGH,
    IMPLAUSIBLE,
    MISSED,
    NORMAL,
    FeverOutcome,
    FeverRecheck,
    Reading,
    classify,
    recheck_key,
)

WINDOW_MS = 300_000


def _reading(eid: str, t_s: int, temp: float, rules: CommunityRules = DEFAULT_RULES) -> Reading:
    high = classify(temp, rules) == HIGH
    return Reading(eid, t_s * 1000, temp, high, "G-01", "D-01", "subj-0001-abcd")


@pytest.mark.parametrize(
    ("temp", "expected"),
    [
        pytest.param(36.6, NORMAL, id="normal temperature"),
        pytest.param(37.3, HIGH, id="exactly the threshold is high"),
        pytest.param(37.2, NORMAL, id="just below threshold is normal"),
        pytest.param(33.0, IMPLAUSIBLE, id="cold infrared gun reading is implausible"),
        pytest.param(43.5, IMPLAUSIBLE, id="above plausible max is implausible"),
        pytest.param(34.0, NORMAL, id="plausible min is plausible"),
    ],
)
def test_classify(temp: float, expected: int) -> None:
    assert classify(temp, DEFAULT_RULES) == expected


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        pytest.param(
            [("a", 0, 38.0), ("b", 120, 38.1)],
            ["FEVER_RECHECK", "FEVER_CONFIRMED"],
            id="fever confirmed on recheck within window",
        ),
        pytest.param(
            [("a", 0, 38.0), ("b", 60, 36.6)],
            ["FEVER_RECHECK", "FEVER_CLEARED"],
            id="recheck below threshold clears",
        ),
        pytest.param(
            [("b", 200, 36.5), ("a", 100, 38.0)],
            [None, "FEVER_CLEARED"],
            id="out-of-order low reading does not confirm",
        ),
        pytest.param(
            [("b", 200, 38.4), ("a", 100, 38.0)],
            ["FEVER_RECHECK", "FEVER_CONFIRMED"],
            id="out-of-order high pair confirms in event time",
        ),
        pytest.param(
            [("a", 100, 38.0), ("b", 50, 36.5)],
            ["FEVER_RECHECK", None],
            id="earlier low reading does not clear a later fever",
        ),
        pytest.param(
            [("a", 100, 38.0), ("b", 50, 38.5)],
            ["FEVER_RECHECK", "FEVER_CONFIRMED"],
            id="earlier high reading confirms with the later open one",
        ),
        pytest.param(
            [("a", 0, 38.0), ("b", 301, 38.0)],
            ["FEVER_RECHECK", "FEVER_RECHECK"],
            id="second reading after the window opens a new recheck",
        ),
        pytest.param(
            [("a", 0, 38.0), ("a2", 0, 38.0)],
            ["FEVER_RECHECK", "DUPLICATE"],
            id="same instant on the same device is one measurement, not a recheck",
        ),
        pytest.param(
            [("n", 0, 36.5), ("a", 10, 38.0), ("b", 20, 38.2), ("c", 30, 38.3)],
            [None, "FEVER_RECHECK", "FEVER_CONFIRMED", "FEVER_RECHECK"],
            id="a confirmed fever does not confirm again",
        ),
    ],
)
def test_recheck_sequences(
    sequence: list[tuple[str, int, float]], expected: list[str | None]
) -> None:
    fever = FeverRecheck()
    got = []
    for eid, t_s, temp in sequence:
        outcome = fever.observe("k", _reading(eid, t_s, temp), WINDOW_MS)
        got.append(outcome if outcome is None or isinstance(outcome, str) else outcome.alert_type)
    assert got == expected


def test_confirmation_names_both_readings_in_event_time_order() -> None:
    fever = FeverRecheck()
    fever.observe("k", _reading("late", 200, 38.4), WINDOW_MS)
    outcome = fever.observe("k", _reading("early", 100, 38.0), WINDOW_MS)
    assert isinstance(outcome, FeverOutcome) and outcome.second is not None
    assert (outcome.first.event_id, outcome.second.event_id) == ("early", "late")
    assert outcome.first.status == outcome.second.status == CONFIRMED


def test_missed_recheck_closes_at_window_end_and_can_still_be_decided() -> None:
    fever = FeverRecheck()
    fever.observe("k", _reading("a", 0, 38.0), WINDOW_MS)
    assert fever.close_due(299_999) == []
    missed = fever.close_due(300_000)
    assert [r.event_id for r in missed] == ["a"]
    assert missed[0].status == MISSED
    assert fever.close_due(400_000) == []  # reported once
    outcome = fever.observe("k", _reading("b", 250, 36.4), WINDOW_MS)
    assert isinstance(outcome, FeverOutcome) and outcome.alert_type == "FEVER_CLEARED"
    assert missed[0].status == CLEARED


def test_expire_keeps_open_rechecks() -> None:
    fever = FeverRecheck()
    fever.observe("old", _reading("n", 0, 36.5), WINDOW_MS)
    fever.observe("open", _reading("a", 0, 38.0), WINDOW_MS)
    fever.expire(1_000_000)
    assert len(fever) == 1 and fever.open_count() == 1


@pytest.mark.parametrize(
    ("subject", "device", "key"),
    [
        pytest.param("subj-1", "D-01", "subj-1", id="subject keys the recheck"),
        pytest.param(None, "D-01", "device:D-01", id="without subject the device keys it"),
        pytest.param("", "D-02", "device:D-02", id="empty subject counts as none"),
    ],
)
def test_recheck_key(subject: str | None, device: str, key: str) -> None:
    assert recheck_key(subject, device) == key
