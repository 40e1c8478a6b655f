"""Silences: a member of staff mutes the alerts that match, for a time, with a reason
(Alertmanager's silences) — e.g. every FEVER_RECHECK_MISSED of the east gate's thermometer
while it is away for repair.

A silence is a ``Silence`` record on the compacted topic ``alert.silences`` (key
``silence_id``); the latest record of an id is the silence, so expiring one early is the same
silence again with ``ends_at`` moved to that moment. The console and ``fangxian silence``
write them; every dispatcher instance reads all of them (``SilenceBook``).

Matchers are equality over sets: the alert's community is the silence's, and its gate, device
and type are each in the silence's list when that list is not empty (at least one list is
set: a silence never mutes a whole community). A silence is active from ``starts_at`` until
``ends_at`` (exclusive) on the clock the caller passes — the dispatcher's — and ends by itself.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from fangxian.core.codes import credit_code_format_ok

#: the longest a silence may last; ``alert.silences`` keeps records a day longer than this
MAX_DURATION_S: Final = 30 * 86_400
COMMENT_MAX_CHARS: Final = 300
MATCHER_MAX_VALUES: Final = 50
_ALERT_TYPE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
VIA: Final = frozenset({"console", "cli"})


class SilenceInvalid(ValueError):
    """A silence that may not be created, with the reason in Chinese and English."""

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(f"{message_zh} / {message_en}")
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass(frozen=True)
class Silence:
    silence_id: str
    community_id: str
    gate_ids: frozenset[str]
    device_ids: frozenset[str]
    alert_types: frozenset[str]
    starts_at: int
    ends_at: int
    comment: str
    created_by: str
    via: str
    created_at: int
    updated_by: str
    updated_at: int

    def matches(
        self, community_id: str, gate_id: str | None, device_id: str | None, alert_type: str
    ) -> bool:
        if community_id != self.community_id:
            return False
        if self.gate_ids and gate_id not in self.gate_ids:
            return False
        if self.device_ids and device_id not in self.device_ids:
            return False
        return not self.alert_types or alert_type in self.alert_types

    def active_at(self, now_ms: int) -> bool:
        return self.starts_at <= now_ms < self.ends_at

    def state(self, now_ms: int) -> str:
        """``pending`` (starts later), ``active`` or ``expired``."""
        if now_ms < self.starts_at:
            return "pending"
        return "active" if now_ms < self.ends_at else "expired"

    def matchers(self) -> str:
        """The matchers as one line: ``gate=east-gate device=gun-east-03 type=A|B``."""
        parts = [
            f"{name}={'|'.join(sorted(values))}"
            for name, values in (
                ("gate", self.gate_ids),
                ("device", self.device_ids),
                ("type", self.alert_types),
            )
            if values
        ]
        return " ".join(parts)

    def to_record(self) -> dict[str, Any]:
        return {
            "silence_id": self.silence_id,
            "community_id": self.community_id,
            "gate_ids": sorted(self.gate_ids),
            "device_ids": sorted(self.device_ids),
            "alert_types": sorted(self.alert_types),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "comment": self.comment,
            "created_by": self.created_by,
            "via": self.via,
            "created_at": self.created_at,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }

    def to_json(self, now_ms: int) -> dict[str, Any]:
        """What the console and ``fangxian silence list --json`` show."""
        return {**self.to_record(), "state": self.state(now_ms), "matchers": self.matchers()}


def silence_from_record(record: Mapping[str, Any]) -> Silence:
    return Silence(
        silence_id=record["silence_id"],
        community_id=record["community_id"],
        gate_ids=frozenset(record.get("gate_ids") or ()),
        device_ids=frozenset(record.get("device_ids") or ()),
        alert_types=frozenset(record.get("alert_types") or ()),
        starts_at=int(record["starts_at"]),
        ends_at=int(record["ends_at"]),
        comment=record.get("comment", ""),
        created_by=record.get("created_by", ""),
        via=record.get("via", "console"),
        created_at=int(record.get("created_at") or record["starts_at"]),
        updated_by=record.get("updated_by") or record.get("created_by", ""),
        updated_at=int(record.get("updated_at") or record.get("created_at") or 0),
    )


_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> int:
    """``"2h"`` → 7200; ``"90s"``, ``"30m"``, ``"3d"``, ``"600"`` (seconds) too."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise SilenceInvalid(
            f"时长应如 30m、2h、3d：{text!r}", f"not a duration like 30m / 2h / 3d: {text!r}"
        )
    return int(found[1]) * _UNIT_S[found[2]]


def split_values(text: str | Iterable[str]) -> list[str]:
    """Matcher values from a form field or flags: ``"east-gate, west-gate"`` or a list."""
    items = [text] if isinstance(text, str) else list(text)
    return [v for item in items for v in re.split(r"[,\s，、]+", item) if v]


def _values(values: Iterable[str], what_zh: str, what_en: str) -> frozenset[str]:
    out = frozenset(v.strip() for v in values if v and v.strip())
    if len(out) > MATCHER_MAX_VALUES:
        raise SilenceInvalid(
            f"{what_zh}最多 {MATCHER_MAX_VALUES} 个", f"at most {MATCHER_MAX_VALUES} {what_en}"
        )
    return out


def check_request(
    gate_ids: Iterable[str],
    device_ids: Iterable[str],
    alert_types: Iterable[str],
    duration_s: int,
    comment: str,
) -> tuple[frozenset[str], frozenset[str], frozenset[str], str]:
    """The matchers and the reason of a silence someone asks for, checked (the community and
    who asks are checked by whoever knows them): raises ``SilenceInvalid``."""
    gates = _values(gate_ids, "门岗", "gates")
    devices = _values(device_ids, "设备", "devices")
    types = _values((t.upper() for t in alert_types), "预警类型", "alert types")
    bad = sorted(t for t in types if not _ALERT_TYPE.fullmatch(t))
    if bad:
        raise SilenceInvalid(f"预警类型无效：{bad}", f"not alert type names: {bad}")
    if not (gates or devices or types):
        raise SilenceInvalid(
            "请至少指定门岗、设备或预警类型之一（不能静默整个社区）",
            "name at least one gate, device or alert type (a whole community is never silenced)",
        )
    if not 0 < duration_s <= MAX_DURATION_S:
        raise SilenceInvalid(
            f"时长须在 1 秒到 {MAX_DURATION_S // 86400} 天之间",
            f"the duration must be 1 s to {MAX_DURATION_S // 86400} days",
        )
    text = " ".join(comment.split())
    if not text:
        raise SilenceInvalid("请填写静默原因", "a silence needs a reason")
    if len(text) > COMMENT_MAX_CHARS:
        raise SilenceInvalid(
            f"原因最多 {COMMENT_MAX_CHARS} 个字",
            f"the reason has at most {COMMENT_MAX_CHARS} characters",
        )
    return gates, devices, types, text


def new_silence(
    *,
    community_id: str,
    gate_ids: Iterable[str] = (),
    device_ids: Iterable[str] = (),
    alert_types: Iterable[str] = (),
    duration_s: int,
    comment: str,
    created_by: str,
    now_ms: int,
    via: str,
    starts_at: int | None = None,
    silence_id: str | None = None,
) -> Silence:
    """A new silence from what a person asked for, checked; raises ``SilenceInvalid``."""
    if not credit_code_format_ok(community_id):
        raise SilenceInvalid("社区代码无效", f"not a community code: {community_id!r}")
    gates, devices, types, text = check_request(
        gate_ids, device_ids, alert_types, duration_s, comment
    )
    if via not in VIA:
        raise ValueError(f"via must be one of {sorted(VIA)}")
    if not created_by:
        raise SilenceInvalid("未指明操作人员", "who silences is not known")
    start = now_ms if starts_at is None else starts_at
    if start < now_ms - 60_000:
        raise SilenceInvalid("开始时间不能早于现在", "a silence cannot start in the past")
    return Silence(
        silence_id=silence_id or str(uuid.uuid4()),
        community_id=community_id,
        gate_ids=gates,
        device_ids=devices,
        alert_types=types,
        starts_at=start,
        ends_at=start + duration_s * 1000,
        comment=text,
        created_by=created_by,
        via=via,
        created_at=now_ms,
        updated_by=created_by,
        updated_at=now_ms,
    )


def expire(silence: Silence, staff_id: str, now_ms: int) -> Silence:
    """``silence`` ended at ``now_ms`` by ``staff_id`` (a pending one ends before it starts)."""
    if silence.ends_at <= now_ms:
        raise SilenceInvalid("该静默已结束", f"silence {silence.silence_id} has already ended")
    return replace(
        silence,
        starts_at=min(silence.starts_at, now_ms),
        ends_at=now_ms,
        updated_by=staff_id,
        updated_at=now_ms,
    )


class SilenceBook:
    """Every silence by id, kept up to date record by record (latest wins, a tombstone
    removes), and the one question the dispatcher asks: which silence mutes this alert now?"""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}
        self._by_community: dict[str, dict[str, Silence]] = {}

    def __len__(self) -> int:
        return len(self.silences)

    def apply(self, silence_id: str, record: Mapping[str, Any] | None) -> None:
        old = self.silences.pop(silence_id, None)
        if old is not None:
            self._by_community.get(old.community_id, {}).pop(silence_id, None)
        if record is None:
            return
        silence = silence_from_record(record)
        self.silences[silence_id] = silence
        self._by_community.setdefault(silence.community_id, {})[silence_id] = silence

    def matching(
        self,
        community_id: str,
        gate_id: str | None,
        device_id: str | None,
        alert_type: str,
        now_ms: int,
    ) -> Silence | None:
        """The active silence that mutes this alert at ``now_ms`` (of several, the one that
        ends last, then the lowest id: the same answer on every instance), or None."""
        found = [
            s
            for s in self._by_community.get(community_id, {}).values()
            if s.active_at(now_ms) and s.matches(community_id, gate_id, device_id, alert_type)
        ]
        if not found:
            return None
        return min(found, key=lambda s: (-s.ends_at, s.silence_id))

    def has_active(self, now_ms: int) -> bool:
        return any(s.active_at(now_ms) for s in self.silences.values())

    def of_communities(
        self, communities: Iterable[str], now_ms: int, ended_within_ms: int = 86_400_000
    ) -> list[Silence]:
        """The silences of ``communities`` that are pending, active, or ended within
        ``ended_within_ms``: active ones first (ending soonest first), then the ended ones."""
        out = [
            s
            for c in set(communities)
            for s in self._by_community.get(c, {}).values()
            if s.ends_at > now_ms - ended_within_ms
        ]
        return sorted(out, key=lambda s: (s.ends_at <= now_ms, s.ends_at, s.silence_id))

    def prune(self, now_ms: int, keep_ms: int = 86_400_000) -> int:
        """Forget silences that ended more than ``keep_ms`` ago (they can never mute again;
        a later record of the same id comes back through ``apply``). Returns how many."""
        old = [i for i, s in self.silences.items() if s.ends_at <= now_ms - keep_ms]
        for silence_id in old:
            self.apply(silence_id, None)
        return len(old)


def mute_detail(silence: Silence) -> dict[str, str]:
    """What a SILENCED record says about the silence that muted the alert."""
    return {
        "muted_by": "silence",
        "silence_id": silence.silence_id,
        "silence_ends_at": str(silence.ends_at),
        "reason": f"静默 silence {silence.matchers()}: {silence.comment}"[:500],
        "silenced_by": silence.created_by,
    }
