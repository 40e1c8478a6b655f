"""Health report rules: symptom severity, self-reported fever, overdue and completion."""

from __future__ import annotations

import pytest

from streams.rules.config import DEFAULT_RULES
from streams.rules.health_reports import (
    ObservationLog,
    is_overdue,
    reported_fever,
    symptoms_severity,
)


@pytest.mark.parametrize(
    ("symptoms", "severity"),
    [
        pytest.param([], None, id="no symptoms no alert"),
        pytest.param(["SHORTNESS_OF_BREATH"], "CRITICAL", id="shortness of breath is critical"),
        pytest.param(["FEVER"], "WARNING", id="fever symptom is a warning"),
        pytest.param(["LOSS_OF_TASTE_OR_SMELL"], "WARNING", id="loss of taste is a warning"),
        pytest.param(["DRY_COUGH"], "WARNING", id="dry cough is a warning"),
        pytest.param(["FATIGUE", "DIARRHEA"], "INFO", id="unspecific symptoms are info"),
        pytest.param(
            ["FATIGUE", "SHORTNESS_OF_BREATH", "DRY_COUGH"], "CRITICAL", id="the worst one wins"
        ),
    ],
)
def test_symptoms_severity(symptoms: list[str], severity: str | None) -> None:
    assert symptoms_severity(symptoms) == severity


@pytest.mark.parametrize(
    ("temp", "fever"),
    [
        pytest.param(None, False, id="no temperature reported"),
        pytest.param(36.8, False, id="normal self-reported temperature"),
        pytest.param(37.3, True, id="self-reported fever at threshold"),
        pytest.param(45.0, False, id="implausible self-report is not a fever"),
    ],
)
def test_reported_fever(temp: float | None, fever: bool) -> None:
    assert reported_fever(temp, DEFAULT_RULES) == fever


@pytest.mark.parametrize(
    ("today", "minute", "start", "due"),
    [
        pytest.param(100, 601, 95, True, id="after the deadline inside the period"),
        pytest.param(100, 599, 95, False, id="before the deadline"),
        pytest.param(100, 600, 95, True, id="at the deadline"),
        pytest.param(109, 700, 95, False, id="after the observation period"),
        pytest.param(94, 700, 95, False, id="before the observation period"),
        pytest.param(100, 700, None, True, id="no start date: every day"),
    ],
)
def test_is_overdue(today: int, minute: int, start: int | None, due: bool) -> None:
    assert is_overdue(today, minute, 600, start, 14) == due


@pytest.mark.parametrize(
    ("days_reported", "unclean_day", "complete"),
    [
        pytest.param(range(100, 114), None, True, id="observation completed after 14 clean days"),
        pytest.param(range(100, 113), None, False, id="13 days reported is not complete"),
        pytest.param(range(100, 114), 105, False, id="a day with symptoms blocks completion"),
        pytest.param(
            [d for d in range(100, 114) if d != 107], None, False, id="a missing day blocks"
        ),
    ],
)
def test_observation_completion(
    days_reported: range | list[int], unclean_day: int | None, complete: bool
) -> None:
    log = ObservationLog()
    for day in days_reported:
        log.record(day, day != unclean_day, 100, 14)
    assert log.is_complete(100, 14) == complete


def test_reports_outside_the_period_are_ignored() -> None:
    log = ObservationLog()
    log.record(99, False, 100, 14)
    assert log.reported == set() and not log.unclean
