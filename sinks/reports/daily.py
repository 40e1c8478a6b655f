"""The daily community epidemic report (社区疫情信息报表), for one community or one county.

Read from the roll-up tables (``rollups.py``): every figure is ``uniqExactMerge`` over sets of
ids, so redelivered events change nothing, and a county's distinct counts are the union over
its communities (merging the sets), never a sum. Definitions (also in ``docs/queries.md``):

- entries / exits: gate passes (scans) IN / OUT in the local day;
- residents_out: distinct residents with at least one OUT scan;
- visitors / vehicles: distinct visitor passes / vehicles with at least one IN scan;
- fever_rechecks, fevers_confirmed, implausible_readings: FEVER_RECHECK, FEVER_CONFIRMED and
  TEMPERATURE_IMPLAUSIBLE alerts (the worker applies each community's thresholds and recheck
  window; the tables do not know them);
- reports_received: distinct residents with a health report for the day (report_date);
- reports_overdue: distinct residents with a REPORT_OVERDUE alert in the day;
- under_observation: residents known to be under home observation that day — the union of
  those who reported and those overdue (the register itself is reference data, not in
  ClickHouse);
- symptoms: distinct residents reporting each symptom;
- alerts: alerts by type and severity; decisions: gate decisions by outcome (by decided_at);
- passes_by_hour: passes (both directions, every subject type) per local hour;
- clusters_suspected, occupancy_exceeded, gate_anomalies: CLUSTER_SUSPECTED,
  OCCUPANCY_OVER_CAPACITY and GATE_ANOMALY alerts (issue 20), each id once however often it
  was updated, on the day of its event_time (a cluster: its first case; an occupancy excess: the
  minute it began).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas import contract, labels
from sinks.base import Reader
from sinks.reports.on_duty import OnDutyFigures, on_duty_figures

log = logging.getLogger(__name__)

SYMPTOMS = contract.SYMPTOMS
DECISIONS = contract.DECISIONS
SEVERITIES = contract.SEVERITIES

# The scalar figures in report order: key → (中文, English).
FIGURES: dict[str, tuple[str, str]] = {
    "communities": ("社区数", "communities"),
    "entries": ("进入人次", "entries"),
    "exits": ("外出人次", "exits"),
    "residents_out": ("外出居民人数", "distinct residents out"),
    "visitors": ("来访人员数", "visitors admitted"),
    "vehicles": ("进入车辆数", "vehicles admitted"),
    "fever_rechecks": ("体温复测次数", "fever rechecks"),
    "fevers_confirmed": ("确认发热人次", "confirmed fevers"),
    "implausible_readings": ("体温读数异常告警", "implausible-reading alerts"),
    "under_observation": ("居家观察人数", "residents under observation"),
    "reports_received": ("已健康上报人数", "health reports received"),
    "reports_overdue": ("逾期未上报人数", "health reports overdue"),
    "clusters_suspected": ("聚集性疫情预警数", "suspected clusters"),
    "occupancy_exceeded": ("在场人数超限次数", "occupancy over capacity"),
    "gate_anomalies": ("门岗拒绝异常次数", "gate anomalies"),
}
SYMPTOM_LABELS = labels.SYMPTOM_ZH
DECISION_LABELS = labels.DECISION_ZH
SEVERITY_LABELS = labels.SEVERITY_ZH

ALERT_FIGURES = {
    "fever_rechecks": "FEVER_RECHECK",
    "fevers_confirmed": "FEVER_CONFIRMED",
    "implausible_readings": "TEMPERATURE_IMPLAUSIBLE",
    # issue 20: one per alert id, however often it was updated (a cluster growing, an
    # occupancy alert cleared), on the day of its event_time (a cluster's first case)
    "clusters_suspected": "CLUSTER_SUSPECTED",
    "occupancy_exceeded": "OCCUPANCY_OVER_CAPACITY",
    "gate_anomalies": "GATE_ANOMALY",
}
OVERDUE_ALERT = "REPORT_OVERDUE"


@dataclass(frozen=True)
class Scope:
    """Whose report: one community (credit code) or one county (GB/T 2260 code, which is
    characters 3–8 of its communities' credit codes)."""

    kind: Literal["community", "county"]
    code: str

    def condition(self) -> str:
        """SQL over ``community_id`` selecting the scope (uses the ``code`` parameter)."""
        if self.kind == "community":
            return "community_id = %(code)s"
        return "substring(community_id, 3, 6) = %(code)s"


@dataclass(frozen=True)
class AlertCount:
    alert_type: str
    severity: str
    count: int


@dataclass(frozen=True)
class DailyReport:
    scope: Scope
    date: dt.date
    timezone: str
    figures: dict[str, int]  # the keys of FIGURES
    symptoms: dict[str, int]  # every SYMPTOMS key
    alerts: list[AlertCount]  # non-zero only, by type then severity
    decisions: dict[str, int]  # every DECISIONS key
    passes_by_hour: list[int] = field(default_factory=lambda: [0] * 24)  # local hours 0–23
    on_duty: list[OnDutyFigures] = field(default_factory=list)  # per community (on_duty.py)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (English keys; labels are added by render)."""
        return {
            "scope": self.scope.kind,
            "code": self.scope.code,
            "date": self.date.isoformat(),
            "timezone": self.timezone,
            "figures": dict(self.figures),
            "symptoms": dict(self.symptoms),
            "alerts": [
                {"alert_type": a.alert_type, "severity": a.severity, "count": a.count}
                for a in self.alerts
            ],
            "decisions": dict(self.decisions),
            "passes_by_hour": list(self.passes_by_hour),
            "on_duty": [f.to_dict() for f in self.on_duty],
        }


def _one(rows: list[tuple[Any, ...]]) -> tuple[int, ...]:
    (row,) = rows
    return tuple(int(v or 0) for v in row)


def build_report(reader: Reader, scope: Scope, day: dt.date, timezone: str) -> DailyReport:
    """The report of ``scope`` for the local calendar ``day`` in ``timezone``."""
    from sinks.reports.sqltime import local_day_bounds

    db = reader.database
    start, end = local_day_bounds(day, timezone)
    params = {"code": scope.code, "start": start, "end": end, "day": day.isoformat()}
    where = (
        f"{scope.condition()} AND minute >= toDateTime(%(start)s) AND minute < toDateTime(%(end)s)"
    )
    on_day = f"{scope.condition()} AND report_date = toDate(%(day)s)"

    entries, exits, residents_out, visitors, vehicles = _one(
        reader.query(
            "SELECT uniqExactMergeIf(passes, direction = 'IN'),"
            " uniqExactMergeIf(passes, direction = 'OUT'),"
            " uniqExactMergeIf(subjects, direction = 'OUT' AND subject_type = 'RESIDENT'),"
            " uniqExactMergeIf(subjects, direction = 'IN' AND subject_type = 'VISITOR'),"
            " uniqExactMergeIf(subjects, direction = 'IN' AND subject_type = 'VEHICLE')"
            f" FROM {db}.gate_minute WHERE {where}",
            params,
        )
    )
    hours = [0] * 24
    for hour, passes in reader.query(
        "SELECT intDiv(toUInt32(minute) - %(start)s, 3600) AS h, uniqExactMerge(passes)"
        f" FROM {db}.gate_minute WHERE {where} GROUP BY h",
        params,
    ):
        hours[min(int(hour), 23)] += int(passes)  # a 25-hour DST day folds into the last hour

    alerts = [
        AlertCount(str(t), str(s), int(n))
        for t, s, n in reader.query(
            "SELECT alert_type, toString(severity) AS s, uniqExactMerge(alerts)"
            f" FROM {db}.alert_minute WHERE {where} GROUP BY alert_type, s"
            " ORDER BY alert_type, s",
            params,
        )
        if int(n)
    ]
    (reports_overdue,) = _one(
        reader.query(
            "SELECT uniqExactMergeIf(subjects, alert_type = %(overdue)s AND subject_known = 1)"
            f" FROM {db}.alert_minute WHERE {where}",
            {**params, "overdue": OVERDUE_ALERT},
        )
    )
    (under_observation,) = _one(
        reader.query(
            "SELECT uniqExactMerge(s) FROM ("
            f" SELECT residents AS s FROM {db}.health_day WHERE {on_day} AND symptom = ''"
            " UNION ALL"
            f" SELECT subjects AS s FROM {db}.alert_minute WHERE {where}"
            " AND alert_type = %(overdue)s AND subject_known = 1)",
            {**params, "overdue": OVERDUE_ALERT},
        )
    )
    symptoms = dict.fromkeys(SYMPTOMS, 0)
    reports_received = 0
    for symptom, residents in reader.query(
        f"SELECT symptom, uniqExactMerge(residents) FROM {db}.health_day WHERE {on_day}"
        " GROUP BY symptom",
        params,
    ):
        if symptom == "":
            reports_received = int(residents)
        else:
            symptoms[str(symptom)] = int(residents)
    decisions = dict.fromkeys(DECISIONS, 0)
    for decision, n in reader.query(
        f"SELECT toString(decision) AS d, uniqExactMerge(decisions) FROM {db}.decision_minute"
        f" WHERE {where} GROUP BY d",
        params,
    ):
        decisions[str(decision)] = int(n)
    (communities,) = _one(
        reader.query(
            "SELECT uniqExact(community_id) FROM ("
            f" SELECT community_id FROM {db}.gate_minute WHERE {where}"
            f" UNION ALL SELECT community_id FROM {db}.alert_minute WHERE {where}"
            f" UNION ALL SELECT community_id FROM {db}.decision_minute WHERE {where}"
            f" UNION ALL SELECT community_id FROM {db}.health_day WHERE {on_day})",
            params,
        )
    )
    by_type: dict[str, int] = {}
    for alert in alerts:
        by_type[alert.alert_type] = by_type.get(alert.alert_type, 0) + alert.count
    figures = {
        "communities": communities,
        "entries": entries,
        "exits": exits,
        "residents_out": residents_out,
        "visitors": visitors,
        "vehicles": vehicles,
        **{key: by_type.get(alert_type, 0) for key, alert_type in ALERT_FIGURES.items()},
        "under_observation": under_observation,
        "reports_received": reports_received,
        "reports_overdue": reports_overdue,
    }
    on_duty = on_duty_figures(reader, scope.condition(), params, start, end)
    log.info("built %s report for %s %s", scope.kind, scope.code, day)
    return DailyReport(scope, day, timezone, figures, symptoms, alerts, decisions, hours, on_duty)
