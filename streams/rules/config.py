"""Per-community thresholds (the ``CommunityRules`` reference record) with the contract's defaults.

A community without a record gets :data:`DEFAULT_RULES`. Invalid values in a record fall back to
the default for that field (a bad record must not stop the gates), and are logged once, when the
record is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from schemas import contract
from schemas.contract import DECISIONS, LIMIT_DIRECTIONS, LIMIT_SCOPES, MAX_ENTRY_LIMIT_WINDOW_S

log = logging.getLogger(__name__)

MINUTES_PER_DAY = 1440

_ENUM_FIELDS: dict[str, tuple[str, ...]] = {
    "yellow_code_action": DECISIONS,
    "entry_limit_action": DECISIONS,
    "curfew_action": DECISIONS,
    "entry_limit_scope": LIMIT_SCOPES,
    "entry_limit_direction": LIMIT_DIRECTIONS,
    "cluster_scope": contract.enum_symbols("ClusterScope"),
}
_MINUTE_FIELDS = ("curfew_start_minute", "curfew_end_minute", "report_deadline_minute")
_NULLABLE_FIELDS = ("curfew_start_minute", "curfew_end_minute")
#: upper bounds of fields, with why (a value above is invalid): the rules keep pass history
#: for the longest entry-limit window a community may configure (issue 20, docs/rules.md)
_MAXIMA: dict[str, tuple[int, str]] = {
    "entry_limit_window_s": (
        MAX_ENTRY_LIMIT_WINDOW_S,
        f"above the maximum {MAX_ENTRY_LIMIT_WINDOW_S} s "
        f"({MAX_ENTRY_LIMIT_WINDOW_S // 86_400} days) whose pass history is kept",
    ),
}


@dataclass(frozen=True, slots=True)
class CommunityRules:
    """Thresholds of one community; every field has the default from docs/contract.md."""

    community_id: str = ""
    timezone: str = "Asia/Shanghai"
    fever_threshold_c: float = 37.3
    recheck_window_s: int = 300
    plausible_min_c: float = 34.0
    plausible_max_c: float = 43.0
    yellow_code_action: str = "WARN"
    entry_limit_scope: str = "NONE"
    entry_limit_direction: str = "OUT"
    entry_limit_count: int = 1
    entry_limit_window_s: int = 172_800
    entry_limit_action: str = "DENY"
    dedupe_window_s: int = 30
    curfew_start_minute: int | None = None
    curfew_end_minute: int | None = None
    curfew_action: str = "WARN"
    report_deadline_minute: int = 600
    observation_days: int = 14
    device_silent_s: int = 600
    drift_margin_c: float = 0.8
    drift_window_s: int = 900
    alert_suppression_s: int = 600
    updated_at: int = 0
    # early warning over windows (streams/rules/early_warning.py, docs/rules.md)
    cluster_scope: str = "BUILDING"
    cluster_min_cases: int = 3
    cluster_window_s: int = 259_200
    capacity_persons: int = 0
    gate_anomaly_window_s: int = 600
    gate_anomaly_baseline_s: int = 3600
    gate_anomaly_min_refusals: int = 10
    gate_anomaly_factor: float = 3.0

    def __post_init__(self) -> None:
        for name, (maximum, why) in _MAXIMA.items():
            value = getattr(self, name)
            if value > maximum:
                raise ValueError(f"{name}={value} is {why}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> CommunityRules:
        """Rules from a ``CommunityRules`` record; ``None`` (no record, or a tombstone) gives the
        defaults. Unknown keys are ignored; a missing, null or invalid value takes the default."""
        if not record:
            return DEFAULT_RULES
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in record:
                continue
            raw = record[f.name]
            default = getattr(DEFAULT_RULES, f.name)
            value = _coerce(f.name, raw, default)
            if value is _INVALID:
                log.warning(
                    "community %s: invalid %s=%r in rules record, using default %r",
                    record.get("community_id"),
                    f.name,
                    raw,
                    default,
                )
                continue
            bound = _MAXIMA.get(f.name)
            if bound is not None and value > bound[0]:
                log.warning(
                    "community %s: invalid %s=%r in rules record (%s), using default %r",
                    record.get("community_id"),
                    f.name,
                    raw,
                    bound[1],
                    default,
                )
                continue
            values[f.name] = value
        return cls(**values)

    @property
    def curfew_enabled(self) -> bool:
        return (
            self.curfew_start_minute is not None
            and self.curfew_end_minute is not None
            and self.curfew_start_minute != self.curfew_end_minute
        )


_INVALID: Any = object()


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if raw is None:
        return None if name in _NULLABLE_FIELDS else default
    if name in _ENUM_FIELDS:
        return raw if raw in _ENUM_FIELDS[name] else _INVALID
    if isinstance(raw, bool):
        return _INVALID
    try:
        if isinstance(default, float):
            value: Any = float(raw)
        elif isinstance(default, int) or name in _NULLABLE_FIELDS:
            value = int(raw)
        else:
            return str(raw)
    except (TypeError, ValueError):
        return _INVALID
    if name in _MINUTE_FIELDS and not 0 <= value < MINUTES_PER_DAY:
        return _INVALID
    if isinstance(value, int) and value < 0:
        return _INVALID
    return value


DEFAULT_RULES = CommunityRules()
