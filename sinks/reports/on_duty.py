"""Status feedback in the daily report (实时通知状态反馈): per community, the alerts the on-duty
dispatcher took on in the local day, how many were acknowledged, how fast, and how many are
still unacknowledged. Read from ``alert_actions`` (migration 0004).

Definitions: an alert counts on the day of its ROUTED record (when the dispatcher took it on;
SILENCED alerts are not paged and not counted); time to acknowledge = its ACKNOWLEDGED minus
its first NOTIFIED (the page that reached someone), in seconds; unacknowledged = routed, with
neither ACKNOWLEDGED nor RESOLVED yet. ``action_id`` repeats (a re-read topic) change nothing:
every figure is a min/max per alert.

Muted alerts (issue 22): silenced = alerts a staff silence muted (a SILENCED record with
``muted_by=silence``), inhibited = alerts an inhibition rule held back (``muted_by=inhibition``),
each counted once on the day of that record — recorded, shown in the console, never paged."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from sinks.base import Reader
from sinks.legacy import map_subscript_to_nested, supports
from sinks.reports.sqltime import epoch_ms_expr

# (key, 中文, English) in report order
ON_DUTY_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("alerts_routed", "派发预警数", "alerts paged"),
    ("acknowledged", "已确认", "acknowledged"),
    ("unacknowledged", "未确认", "unacknowledged"),
    ("ack_p50_s", "确认用时中位数（秒）", "time to acknowledge, median (s)"),
    ("ack_p90_s", "确认用时90分位（秒）", "time to acknowledge, p90 (s)"),
    ("ack_max_s", "确认用时最长（秒）", "time to acknowledge, max (s)"),
    ("silenced", "静默未推送", "silenced (recorded, not paged)"),
    ("inhibited", "抑制未推送", "held back by inhibition (recorded, not paged)"),
)


@dataclass(frozen=True)
class OnDutyFigures:
    community_id: str
    alerts_routed: int
    acknowledged: int
    unacknowledged: int
    ack_p50_s: int
    ack_p90_s: int
    ack_max_s: int
    silenced: int = 0
    inhibited: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def on_duty_figures(
    reader: Reader, condition: str, params: dict[str, Any], start_s: int, end_s: int
) -> list[OnDutyFigures]:
    """Per community of the scope (``condition`` over ``community_id``), alerts routed in
    ``[start_s, end_s)`` UTC seconds."""
    db = reader.database
    ms = epoch_ms_expr("created_at", reader.server_version())
    sql = (
        "SELECT cid, count() AS routed, countIf(acked > 0) AS acknowledged,"
        " countIf(acked = 0 AND resolved = 0) AS open,"
        " quantileExactIf(0.5)(acked - notified, acked > 0 AND notified > 0) AS p50,"
        " quantileExactIf(0.9)(acked - notified, acked > 0 AND notified > 0) AS p90,"
        " maxIf(acked - notified, acked > 0 AND notified > 0) AS worst"
        " FROM ("
        "  SELECT alert_id, anyIf(community_id, action = 'ROUTED') AS cid,"
        f"  minIf({ms}, action = 'ROUTED') AS routed_at,"
        f"  minIf({ms}, action = 'NOTIFIED') AS notified,"
        f"  minIf({ms}, action = 'ACKNOWLEDGED') AS acked,"
        f"  minIf({ms}, action = 'RESOLVED') AS resolved,"
        "  countIf(action = 'ROUTED') AS n_routed"
        f"  FROM {db}.alert_actions"
        "  WHERE action IN ('ROUTED', 'NOTIFIED', 'ACKNOWLEDGED', 'RESOLVED')"
        f"  AND {condition}"
        "  GROUP BY alert_id"
        "  HAVING n_routed > 0 AND routed_at >= %(od_start)s AND routed_at < %(od_end)s"
        " ) GROUP BY cid ORDER BY cid"
    )
    window = {"od_start": start_s * 1000, "od_end": end_s * 1000}
    rows = reader.query(sql, {**params, **window})
    muted = _muted(reader, condition, {**params, **window})
    figures = [
        OnDutyFigures(
            community_id=str(c),
            alerts_routed=int(n),
            acknowledged=int(acked),
            unacknowledged=int(still_open),
            ack_p50_s=round(float(p50 or 0) / 1000),
            ack_p90_s=round(float(p90 or 0) / 1000),
            ack_max_s=round(float(worst or 0) / 1000),
        )
        for c, n, acked, still_open, p50, p90, worst in rows
    ]
    for i, f in enumerate(figures):
        if f.community_id in muted:
            silenced, inhibited = muted.pop(f.community_id)
            figures[i] = replace(f, silenced=silenced, inhibited=inhibited)
    figures += [
        OnDutyFigures(c, 0, 0, 0, 0, 0, 0, silenced=s, inhibited=i) for c, (s, i) in muted.items()
    ]
    return sorted(figures, key=lambda f: f.community_id)


def _muted(reader: Reader, condition: str, params: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per community: alerts silenced and alerts held back, by their SILENCED record's day."""
    version = reader.server_version()
    ms = epoch_ms_expr("created_at", version)
    sql = (
        "SELECT community_id,"
        " uniqExactIf(alert_id, detail['muted_by'] = 'silence'),"
        " uniqExactIf(alert_id, detail['muted_by'] = 'inhibition')"
        f" FROM {reader.database}.alert_actions"
        f" WHERE action = 'SILENCED' AND {condition}"
        f" AND {ms} >= %(od_start)s AND {ms} < %(od_end)s"
        " GROUP BY community_id"
    )
    if not supports(version, "Map subscript"):
        sql = map_subscript_to_nested(sql)
    return {str(c): (int(s), int(i)) for c, s, i in reader.query(sql, params) if int(s) or int(i)}
