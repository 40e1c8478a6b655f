"""Contact query: who passed the same gate within ± a window of each of a subject's passes.

Reads ``gate_scans FINAL`` (a redelivered scan is one pass). The subject's trajectory comes
first, then one query for the scans of other subjects at those gates in the merged time
windows; matching to the nearest pass is done here at millisecond precision, so it is the same
on a server that stores seconds plus milliseconds (18.16). Output is masked.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from fangxian.core.privacy import mask_token
from sinks.base import Reader
from sinks.reports.sqltime import epoch_ms_expr


@dataclass(frozen=True)
class Pass:
    community_id: str
    gate_id: str
    direction: str
    subject_type: str
    subject_id: str
    event_time: int  # epoch ms


@dataclass(frozen=True)
class Contact:
    subject_id: str  # the contact (unmasked here; render masks)
    subject_type: str
    community_id: str
    gate_id: str
    direction: str
    event_time: int  # the contact's pass
    near_pass_time: int  # the subject's pass it is nearest to
    delta_s: float  # contact minus subject, seconds


@dataclass(frozen=True)
class ContactResult:
    subject_id: str
    trajectory: list[Pass]
    contacts: list[Contact]

    @property
    def distinct_contacts(self) -> int:
        return len({c.subject_id for c in self.contacts})


def _select(reader: Reader) -> str:
    ms = epoch_ms_expr("event_time", reader.server_version())
    return (
        "SELECT community_id, gate_id, toString(direction), toString(subject_type), subject_id,"
        f" {ms} AS t FROM {reader.database}.gate_scans FINAL"
    )


def _passes(rows: list[tuple[Any, ...]]) -> list[Pass]:
    return [Pass(str(c), str(g), str(d), str(s), str(i), int(t)) for c, g, d, s, i, t in rows]


def merge_windows(times: list[int], window_ms: int) -> list[tuple[int, int]]:
    """``[t - w, t + w]`` for every ``t``, overlapping ones merged, sorted."""
    merged: list[tuple[int, int]] = []
    for t in sorted(times):
        lo, hi = t - window_ms, t + window_ms
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def match_contacts(trajectory: list[Pass], others: list[Pass], window_ms: int) -> list[Contact]:
    """Each other pass within ``window_ms`` of a subject's pass at the same gate, paired with
    the nearest such pass. Pure."""
    contacts = []
    for other in others:
        near = [
            p
            for p in trajectory
            if (p.community_id, p.gate_id) == (other.community_id, other.gate_id)
            and abs(other.event_time - p.event_time) <= window_ms
            and other.subject_id != p.subject_id
        ]
        if not near:
            continue
        best = min(near, key=lambda p: (abs(other.event_time - p.event_time), p.event_time))
        contacts.append(
            Contact(
                other.subject_id,
                other.subject_type,
                other.community_id,
                other.gate_id,
                other.direction,
                other.event_time,
                best.event_time,
                (other.event_time - best.event_time) / 1000,
            )
        )
    return sorted(contacts, key=lambda c: (c.event_time, c.subject_id))


def find_contacts(
    reader: Reader, subject_id: str, start_ms: int, end_ms: int, window_ms: int
) -> ContactResult:
    """The subject's passes in ``[start_ms, end_ms]`` and everyone within ``window_ms`` of
    one of them at the same gate."""
    rows = reader.query(
        f"{_select(reader)} WHERE subject_id = %(subject)s"
        " AND event_time >= toDateTime(%(lo)s) AND event_time <= toDateTime(%(hi)s)",
        {"subject": subject_id, "lo": start_ms // 1000, "hi": end_ms // 1000 + 1},
    )
    trajectory = sorted(
        (p for p in _passes(rows) if start_ms <= p.event_time <= end_ms),
        key=lambda p: p.event_time,
    )
    by_gate: dict[tuple[str, str], list[int]] = {}
    for p in trajectory:
        by_gate.setdefault((p.community_id, p.gate_id), []).append(p.event_time)
    conditions: list[str] = []
    params: dict[str, Any] = {"subject": subject_id}
    for (community, gate), times in sorted(by_gate.items()):
        for lo, hi in merge_windows(times, window_ms):
            n = len(conditions)
            params |= {
                f"c{n}": community,
                f"g{n}": gate,
                f"lo{n}": lo // 1000,
                f"hi{n}": hi // 1000 + 1,
            }
            conditions.append(
                f"(community_id = %(c{n})s AND gate_id = %(g{n})s"
                f" AND event_time >= toDateTime(%(lo{n})s) AND event_time <= toDateTime(%(hi{n})s))"
            )
    if not conditions:
        return ContactResult(subject_id, trajectory, [])
    others = _passes(
        reader.query(
            f"{_select(reader)} WHERE subject_id != %(subject)s AND ({' OR '.join(conditions)})",
            params,
        )
    )
    return ContactResult(subject_id, trajectory, match_contacts(trajectory, others, window_ms))


# --- output ---------------------------------------------------------------------------------


def _iso(ms: int, timezone: str) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).isoformat(timespec="seconds")


def masked_dict(result: ContactResult, timezone: str) -> dict[str, Any]:
    """The result for people to read: every token masked, times local ISO."""
    return {
        "subject": mask_token(result.subject_id),
        "passes": len(result.trajectory),
        "distinct_contacts": result.distinct_contacts,
        "trajectory": [
            {
                "community_id": p.community_id,
                "gate_id": p.gate_id,
                "direction": p.direction,
                "time": _iso(p.event_time, timezone),
            }
            for p in result.trajectory
        ],
        "contacts": [
            {
                **asdict(c),
                "subject_id": mask_token(c.subject_id),
                "event_time": _iso(c.event_time, timezone),
                "near_pass_time": _iso(c.near_pass_time, timezone),
            }
            for c in result.contacts
        ],
    }


def render_json(result: ContactResult, timezone: str) -> str:
    return json.dumps(masked_dict(result, timezone), ensure_ascii=False, indent=2)


def render_table(result: ContactResult, timezone: str) -> str:
    data = masked_dict(result, timezone)
    lines = [
        f"对象 subject {data['subject']}: 通行 {data['passes']} passes,"
        f" 接触 {data['distinct_contacts']} distinct contacts",
        "接触对象 contact | 类型 type | 门岗 gate | 方向 dir | 时间 time | 相差秒 delta_s",
    ]
    lines += [
        f"{c['subject_id']} | {c['subject_type']} | {c['gate_id']} | {c['direction']}"
        f" | {c['event_time']} | {c['delta_s']:+.0f}"
        for c in data["contacts"]
    ]
    return "\n".join(lines)
