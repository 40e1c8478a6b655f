"""What the console reads from ClickHouse (through a ``sinks.Reader``): today's alerts and
their actions, decisions per gate, occupancy, residents under observation, device health,
the daily report. Every function takes the communities the viewer may see, already checked
(``Viewer.can_see``): values put into SQL are credit codes that passed
``credit_code_format_ok`` (their alphabet has no quote) or integers; everything else goes as a
query parameter. Subject ids leave here masked (``mask_token``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fangxian.console.live import reasons_zh
from fangxian.core.codes import credit_code_format_ok
from fangxian.core.privacy import mask_token
from schemas.labels import ALERT_TYPE_ZH, DECISION_ZH, SYMPTOM_ZH
from sinks import Reader, SinkError
from sinks.legacy import supports
from sinks.readback import read_contract_rows
from sinks.reports.sqltime import epoch_ms_expr, local_day_bounds

log = logging.getLogger(__name__)

DEVICE_ALERTS = (
    "DEVICE_SILENT",
    "DEVICE_DRIFT",
    "DEVICE_CLOCK_SKEW",
    "TEMPERATURE_IMPLAUSIBLE",
)
ADMITTED = ("ALLOW", "WARN")
ALERT_LIMIT = 500
AUDIT_PAGE_ROWS = 50
AUDIT_ACTION_ZH = {
    "sign_in": "登录",
    "sign_out": "退出",
    "password_change": "修改密码",
    "alert_ack": "确认预警",
    "alert_resolve": "处置预警",
    "alert_silence": "静默预警",
    "contacts_query": "密接查询",
    "report_export": "导出报表",
    "forget": "删除个人数据",
}
OUTCOME_ZH = {"ok": "成功", "denied": "被拒绝", "error": "失败"}


def latest_versions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per alert id, its latest version: an early warning is re-emitted with the same
    id as it changes (issue 20), and the ReplacingMergeTree keeps every row until it merges."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = latest.get(row["alert_id"])
        if seen is None or row["created_at"] >= seen["created_at"]:
            latest[row["alert_id"]] = row
    return list(latest.values())


def _codes(communities: Sequence[str]) -> str:
    for code in communities:
        if not credit_code_format_ok(code):
            raise ValueError(f"not a community code: {code!r}")
    return ", ".join(f"'{c}'" for c in communities) or "''"


def local_midnight_s(timezone: str, now: dt.datetime | None = None) -> int:
    today = (now or dt.datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()
    return local_day_bounds(today, timezone)[0]


def today(timezone: str) -> dt.date:
    return dt.datetime.now(ZoneInfo(timezone)).date()


class History:
    def __init__(self, reader: Reader, timezone: str) -> None:
        self.reader = reader
        self.timezone = timezone
        self.db = reader.database

    def _ms(self, column: str) -> str:
        return epoch_ms_expr(column, self.reader.server_version())

    # -- alerts -----------------------------------------------------------------------------
    def alerts_since(self, communities: Sequence[str], start_s: int) -> list[dict[str, Any]]:
        rows = read_contract_rows(
            self.reader,
            "alerts",
            where=(
                f"community_id IN ({_codes(communities)}) AND event_time >= toDateTime({start_s})"
            ),
        )
        rows = latest_versions(rows)
        rows.sort(key=lambda r: r["event_time"], reverse=True)
        return rows[:ALERT_LIMIT]

    def actions_since(self, communities: Sequence[str], start_s: int) -> list[dict[str, Any]]:
        """``alert_actions`` rows of these communities, and the requests (whose community is
        blank: the endpoint does not know it), oldest first."""
        try:
            rows = read_contract_rows(
                self.reader,
                "alert_actions",
                where=(
                    f"(community_id IN ({_codes(communities)}) OR community_id = '')"
                    f" AND created_at >= toDateTime({start_s})"
                ),
            )
        except (SinkError, KeyError) as err:  # no alert_actions table (no dispatcher yet)
            log.debug("no alert actions: %s", err)
            return []
        rows.sort(key=lambda r: r["created_at"])
        return rows

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self.reader.query(
            f"SELECT community_id FROM {self.db}.alerts WHERE alert_id = %(id)s LIMIT 1",
            {"id": alert_id},
        )
        if not rows:
            return None
        community = str(rows[0][0])
        if not credit_code_format_ok(community):
            return None
        found = read_contract_rows(
            self.reader,
            "alerts",
            where=f"community_id = '{community}' AND alert_id = '{_uuidish(alert_id)}'",
        )
        found = latest_versions(found)
        return found[0] if found else None

    # -- decisions --------------------------------------------------------------------------
    def decisions_by_gate(self, community: str, start_s: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for gate, decision, n in self.reader.query(
            f"SELECT gate_id, toString(decision) AS d, count() FROM {self.db}.gate_decisions FINAL"
            " WHERE community_id = %(c)s AND decided_at >= toDateTime(%(start)s)"
            " GROUP BY gate_id, d ORDER BY gate_id, d",
            {"c": community, "start": start_s},
        ):
            out.setdefault(str(gate), {})[str(decision)] = int(n)
        return out

    def recent_decisions(self, community: str, start_s: int, limit: int = 100) -> list[dict]:
        rows = self.reader.query(
            f"SELECT gate_id, toString(decision), reasons, subject_id, {self._ms('decided_at')}"
            f" AS at FROM {self.db}.gate_decisions"
            " WHERE community_id = %(c)s AND decided_at >= toDateTime(%(start)s)"
            f" ORDER BY at DESC LIMIT {int(limit)}",
            {"c": community, "start": start_s},
        )
        return [
            {
                "community_id": community,
                "gate_id": str(gate),
                "decision": str(decision),
                "decision_zh": DECISION_ZH.get(str(decision), str(decision)),
                "reasons": list(reasons),
                "reasons_zh": reasons_zh(list(reasons)),
                "subject": mask_token(subject),
                "decided_at": int(at),
            }
            for gate, decision, reasons, subject, at in rows
        ]

    # -- occupancy --------------------------------------------------------------------------
    def occupancy(self, communities: Sequence[str], start_s: int) -> dict[str, dict[str, int]]:
        """Per community: persons (vehicles excluded) let through IN and OUT since ``start_s``
        (today), and ``now``, the persons inside — the decide stage's definition (issue 20,
        docs/rules.md): IN − OUT of every pass not refused, over all the retained history
        (carried across midnight, not reset), minute by minute in event time, never below zero
        (people who were inside before counting began go out too)."""
        codes = _codes(communities)
        out = {c: {"in": 0, "out": 0, "now": 0} for c in communities}
        for community, minute, ins, outs in self.reader.query(
            "SELECT community_id, toUInt32(toStartOfMinute(event_time)) AS m,"
            " countIf(direction = 'IN'), countIf(direction = 'OUT')"
            f" FROM {self.db}.gate_scans FINAL"
            f" WHERE community_id IN ({codes}) AND subject_type != 'VEHICLE' AND event_id IN ("
            f"  SELECT event_id FROM {self.db}.gate_decisions WHERE community_id IN ({codes})"
            "  AND toString(decision) != 'DENY')"
            " GROUP BY community_id, m ORDER BY community_id, m"
        ):
            row = out[str(community)]
            row["now"] = max(0, row["now"] + int(ins) - int(outs))
            if int(minute) >= start_s:
                row["in"] += int(ins)
                row["out"] += int(outs)
        return out

    # -- residents under observation --------------------------------------------------------
    def observation(self, community: str, day: dt.date) -> list[dict[str, Any]]:
        """Residents with a health report for ``day`` or a REPORT_OVERDUE alert on it (the
        daily report's definition of "under observation"), with today's status."""
        start, end = local_day_bounds(day, self.timezone)
        people: dict[str, dict[str, Any]] = {}
        for subject, at in self.reader.query(
            f"SELECT subject_id, {self._ms('event_time')} FROM {self.db}.alerts FINAL"
            " WHERE community_id = %(c)s AND alert_type = 'REPORT_OVERDUE'"
            " AND event_time >= toDateTime(%(start)s) AND event_time < toDateTime(%(end)s)",
            {"c": community, "start": start, "end": end},
        ):
            if subject:
                people[str(subject)] = {"status": "OVERDUE", "overdue_at": int(at)}
        for resident, at, temperature, symptoms in self.reader.query(
            f"SELECT resident_id, {self._ms('event_time')}, temperature_c, symptoms"
            f" FROM {self.db}.health_reports FINAL"
            " WHERE community_id = %(c)s AND report_date = toDate(%(day)s)",
            {"c": community, "day": day.isoformat()},
        ):
            entry = people.setdefault(str(resident), {})
            entry.update(
                status="REPORTED",
                reported_at=int(at),
                temperature_c=temperature,
                symptoms=[SYMPTOM_ZH.get(str(s), str(s)) for s in symptoms],
            )
        rows = [
            {
                "resident": mask_token(resident),
                "status": entry["status"],
                "status_zh": "已上报" if entry["status"] == "REPORTED" else "逾期未报",
                "reported_at": entry.get("reported_at"),
                "overdue_at": entry.get("overdue_at"),
                "temperature_c": entry.get("temperature_c"),
                "symptoms": entry.get("symptoms", []),
            }
            for resident, entry in people.items()
        ]
        rows.sort(key=lambda r: (r["status"] == "REPORTED", r["resident"]))
        return rows

    # -- device health ----------------------------------------------------------------------
    def devices(self, community: str, start_s: int) -> list[dict[str, Any]]:
        """Every device seen since ``start_s`` (thermometers and gate scanners): readings,
        last seen, and the device alerts raised about it."""
        found: dict[str, dict[str, Any]] = {}
        params = {"c": community, "start": start_s}
        for kind, table, value in (
            ("thermometer", "temperature_readings", "max(temperature_c)"),
            ("scanner", "gate_scans", "0"),
        ):
            for device, gate, n, last, high in self.reader.query(
                f"SELECT device_id, any(gate_id), count(), max({self._ms('event_time')}), {value}"
                f" FROM {self.db}.{table}"
                " WHERE community_id = %(c)s AND event_time >= toDateTime(%(start)s)"
                " GROUP BY device_id ORDER BY device_id",
                params,
            ):
                found[str(device)] = {
                    "device_id": str(device),
                    "kind": kind,
                    "kind_zh": "测温设备" if kind == "thermometer" else "通行核验设备",
                    "gate_id": str(gate),
                    "events": int(n),
                    "last_seen": int(last),
                    "max_c": float(high) if kind == "thermometer" else None,
                    "alerts": [],
                }
        types = ", ".join(f"'{t}'" for t in DEVICE_ALERTS)
        for device, alert_type, n, last in self.reader.query(
            f"SELECT device_id, alert_type, count(), max({self._ms('event_time')})"
            f" FROM {self.db}.alerts FINAL WHERE community_id = %(c)s"
            f" AND event_time >= toDateTime(%(start)s) AND alert_type IN ({types})"
            " GROUP BY device_id, alert_type ORDER BY device_id, alert_type",
            params,
        ):
            entry = found.setdefault(
                str(device or "-"),
                {
                    "device_id": str(device or "-"),
                    "kind": "unknown",
                    "kind_zh": "设备",
                    "gate_id": "",
                    "events": 0,
                    "last_seen": 0,
                    "max_c": None,
                    "alerts": [],
                },
            )
            entry["alerts"].append(
                {
                    "alert_type": str(alert_type),
                    "type_zh": ALERT_TYPE_ZH.get(str(alert_type), str(alert_type)),
                    "count": int(n),
                    "last": int(last),
                }
            )
        return sorted(found.values(), key=lambda d: (not d["alerts"], d["device_id"]))

    # -- communities ------------------------------------------------------------------------
    def communities_in_area(self, area: str, since_s: int) -> list[str]:
        if not area.isdigit() or len(area) != 6:
            return []
        rows = self.reader.query(
            f"SELECT DISTINCT community_id FROM {self.db}.gate_minute"
            " WHERE substring(community_id, 3, 6) = %(a)s AND minute >= toDateTime(%(s)s)",
            {"a": area, "s": since_s},
        )
        return sorted(str(c) for (c,) in rows if credit_code_format_ok(str(c)))


@dataclass(frozen=True)
class AuditPage:
    """One page of audit rows, newest first."""

    rows: list[dict[str, Any]]
    page: int
    has_next: bool


def audit_page(
    reader: Reader,
    *,
    actor: str | None = None,
    area: str | None = None,
    area_staff: Sequence[str] = (),
    page: int = 1,
    per_page: int = AUDIT_PAGE_ROWS,
) -> AuditPage:
    """``audit_log`` rows of one staff member (``actor``) or of a county (``area``: rows about
    one of its communities or the county itself, and rows of ``area_staff``), newest first,
    one per ``audit_id`` (a spooled row may have been inserted twice). Subjects are masked in
    the table already; what else could hold personal data is not selected."""
    if (actor is None) == (area is None):
        raise ValueError("audit_page wants either an actor or an area")
    params: dict[str, Any] = {}
    if actor is not None:
        where = "actor = %(actor)s"
        params["actor"] = actor
    else:
        assert area is not None
        if not area.isdigit() or len(area) != 6:
            return AuditPage([], 1, False)
        where = (
            "(substring(scope, 1, 10) = 'community:' AND substring(scope, 13, 6) = %(area)s)"
            " OR scope = %(county)s"
        )
        params.update(area=area, county=f"county:{area}")
        if area_staff:
            where += f" OR actor IN ({', '.join(_quoted(a) for a in sorted(area_staff))})"
    page = max(1, int(page))
    version = reader.server_version()
    at = epoch_ms_expr("at", version)
    details = (
        "mapKeys(details), mapValues(details)"
        if supports(version, "Map")
        else "details.key, details.value"
    )
    rows = reader.query(
        f"SELECT audit_id, {at} AS at_ms, actor, toString(action), subject, subject_ref, scope,"
        f" origin, {details} FROM {reader.database}.audit_log WHERE {where}"
        f" ORDER BY at_ms DESC, audit_id LIMIT 1 BY audit_id"
        # LIMIT offset, count: 18.16 has no OFFSET keyword
        f" LIMIT {(page - 1) * int(per_page)}, {int(per_page) + 1}",
        params,
    )
    out = []
    for audit_id, at_ms, who, action, subject, ref, scope, origin, keys, values in rows:
        info = dict(zip(keys, values, strict=True))
        outcome = info.get("outcome", "ok")
        out.append(
            {
                "audit_id": str(audit_id),
                "at": int(at_ms),
                "actor": str(who),
                "action": str(action),
                "action_zh": AUDIT_ACTION_ZH.get(str(action), str(action)),
                "outcome": outcome,
                "outcome_zh": OUTCOME_ZH.get(outcome, outcome),
                "reason": info.get("reason", ""),
                "alert_id": info.get("alert_id", ""),
                "subject": str(subject),  # masked when written (sinks.audit.audit_row)
                "subject_ref": str(ref),
                "scope": str(scope),
                "origin": str(origin),
                "user_agent": info.get("ua", ""),
            }
        )
    return AuditPage(out[:per_page], page, len(out) > per_page)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _uuidish(text: str) -> str:
    """An alert id as it may go into SQL: hex digits and dashes only."""
    if not text or any(c not in "0123456789abcdefABCDEF-" for c in text) or len(text) > 64:
        raise ValueError(f"not an alert id: {text!r}")
    return text


@dataclass(frozen=True)
class Capacity:
    """Occupancy limits per community, from ``console_capacity`` ("code=persons,...")."""

    limits: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> Capacity:
        limits: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            code, _, number = part.partition("=")
            if not credit_code_format_ok(code.strip()) or not number.strip().isdigit():
                raise ValueError(
                    f"容量设置有误 bad FANGXIAN_CONSOLE_CAPACITY entry {part!r}: want CODE=PERSONS"
                )
            limits[code.strip()] = int(number)
        return cls(limits)
