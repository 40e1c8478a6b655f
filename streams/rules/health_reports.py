"""Daily health reports of residents (home observation: 居家医学观察).

Severity of SYMPTOMS_REPORTED is the highest of the reported symptoms':

| symptom | severity | why |
| --- | --- | --- |
| SHORTNESS_OF_BREATH | CRITICAL | a sign of severe disease: act now |
| FEVER, DRY_COUGH, LOSS_OF_TASTE_OR_SMELL | WARNING | the typical early signs |
| FATIGUE, SORE_THROAT, DIARRHEA, MUSCLE_ACHE, OTHER | INFO | unspecific: record, follow up |

A reported temperature at/above the fever threshold (and not above the plausible maximum) is a
FEVER_REPORTED (WARNING). A resident under HOME_OBSERVATION who has not reported by the
community's local deadline is REPORT_OVERDUE, once per day; one who reported every day of the
observation period without symptoms or fever gets OBSERVATION_COMPLETED once.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from streams.rules.alerts import CRITICAL, INFO, WARNING
from streams.rules.config import CommunityRules
from streams.rules.temperature import tenths

SYMPTOM_SEVERITY: dict[str, str] = {
    "SHORTNESS_OF_BREATH": CRITICAL,
    "FEVER": WARNING,
    "DRY_COUGH": WARNING,
    "LOSS_OF_TASTE_OR_SMELL": WARNING,
    "FATIGUE": INFO,
    "SORE_THROAT": INFO,
    "DIARRHEA": INFO,
    "MUSCLE_ACHE": INFO,
    "OTHER": INFO,
}
_SEVERITY_RANK = {INFO: 0, WARNING: 1, CRITICAL: 2}


def symptoms_severity(symptoms: Iterable[str]) -> str | None:
    """The severity of a set of symptoms (the highest), or None when there are none."""
    worst: str | None = None
    for symptom in symptoms:
        severity = SYMPTOM_SEVERITY.get(symptom, INFO)
        if worst is None or _SEVERITY_RANK[severity] > _SEVERITY_RANK[worst]:
            worst = severity
    return worst


def reported_fever(temperature_c: float | None, rules: CommunityRules) -> bool:
    """Whether a self-reported temperature is a fever (implausible values are not); compared at
    0.1 °C like every temperature rule (``streams.rules.temperature.tenths``)."""
    if temperature_c is None:
        return False
    t = tenths(temperature_c)
    return tenths(rules.fever_threshold_c) <= t <= tenths(rules.plausible_max_c)


def observation_days(start_day: int | None, days: int) -> range | None:
    """The local days of an observation period, or None without a start."""
    return None if start_day is None else range(start_day, start_day + days)


def is_overdue(
    today: int, minute: int, deadline_minute: int, start_day: int | None, days: int
) -> bool:
    """Whether today's report is due (deadline passed, today inside the observation period);
    the caller checks whether it was made."""
    if minute < deadline_minute:
        return False
    period = observation_days(start_day, days)
    return period is None or today in period


class ObservationLog:
    """Reports of one resident under observation. ``doubtful`` days had only reports with an
    implausible temperature (44.5 °C typed by hand): reported, but not a clean day."""

    __slots__ = ("clean_days", "completed", "overdue_alerted", "reported", "unclean")

    def __init__(self) -> None:
        self.reported: set[int] = set()
        self.clean_days: set[int] = set()
        self.overdue_alerted: set[int] = set()
        self.unclean = False  # any report in the period with symptoms or fever
        self.completed = False

    def record(
        self, day: int, clean: bool, start_day: int | None, days: int, plausible: bool = True
    ) -> None:
        period = observation_days(start_day, days)
        if period is not None and day not in period:
            return
        self.reported.add(day)
        if not clean:
            self.unclean = True
        elif plausible:
            self.clean_days.add(day)

    def is_complete(self, start_day: int | None, days: int, today: int | None = None) -> bool:
        """Every day of the period reported clean, none with symptoms; with ``today``, also the
        last day of the period is over (``today`` is after it)."""
        period = observation_days(start_day, days)
        if period is None or self.unclean or days <= 0:
            return False
        if today is not None and today <= period[-1]:
            return False
        return all(d in self.clean_days for d in period)


def encode_log(log: ObservationLog) -> bytes:
    return orjson.dumps(
        [
            sorted(log.reported),
            sorted(log.clean_days),
            sorted(log.overdue_alerted),
            log.unclean,
            log.completed,
        ]
    )


def decode_log(raw: bytes) -> ObservationLog:
    reported, clean, overdue, unclean, completed = orjson.loads(raw)
    log = ObservationLog()
    log.reported = set(reported)
    log.clean_days = set(clean)
    log.overdue_alerted = set(overdue)
    log.unclean = unclean
    log.completed = completed
    return log
