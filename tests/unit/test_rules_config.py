"""CommunityRules: defaults from the contract, tolerant parsing of records."""

from __future__ import annotations

from typing import Any

import pytest

from streams.rules.config import DEFAULT_RULES, CommunityRules


@pytest.mark.parametrize(
    ("record", "field", "expected"),
    [
        pytest.param(None, "fever_threshold_c", 37.3, id="no record gives default threshold"),
        pytest.param({}, "recheck_window_s", 300, id="empty record gives default window"),
        pytest.param(
            {"community_id": "c", "fever_threshold_c": 37.5},
            "fever_threshold_c",
            37.5,
            id="record threshold wins",
        ),
        pytest.param(
            {"community_id": "c", "yellow_code_action": "DENY"},
            "yellow_code_action",
            "DENY",
            id="yellow action from record",
        ),
        pytest.param(
            {"community_id": "c", "yellow_code_action": "EXPLODE"},
            "yellow_code_action",
            "WARN",
            id="invalid enum falls back to default",
        ),
        pytest.param(
            {"community_id": "c", "recheck_window_s": None},
            "recheck_window_s",
            300,
            id="null non-nullable field takes default",
        ),
        pytest.param(
            {"community_id": "c", "curfew_start_minute": 1380},
            "curfew_start_minute",
            1380,
            id="curfew start from record",
        ),
        pytest.param(
            {"community_id": "c", "curfew_start_minute": 2000},
            "curfew_start_minute",
            None,
            id="minute beyond the day is invalid",
        ),
        pytest.param(
            {"community_id": "c", "drift_margin_c": "1.5"},
            "drift_margin_c",
            1.5,
            id="numeric string is coerced",
        ),
        pytest.param(
            {"community_id": "c", "entry_limit_count": -1},
            "entry_limit_count",
            1,
            id="negative count is invalid",
        ),
        pytest.param(
            {"community_id": "c", "unknown_field": 1},
            "alert_suppression_s",
            600,
            id="unknown keys are ignored",
        ),
    ],
)
def test_from_record(record: dict[str, Any] | None, field: str, expected: Any) -> None:
    assert getattr(CommunityRules.from_record(record), field) == expected


def test_defaults_match_contract() -> None:
    r = DEFAULT_RULES
    assert (r.timezone, r.plausible_min_c, r.plausible_max_c) == ("Asia/Shanghai", 34.0, 43.0)
    assert (r.entry_limit_scope, r.entry_limit_direction, r.entry_limit_count) == (
        "NONE",
        "OUT",
        1,
    )
    assert (r.entry_limit_window_s, r.entry_limit_action, r.dedupe_window_s) == (
        172_800,
        "DENY",
        30,
    )
    assert (r.curfew_start_minute, r.curfew_end_minute, r.curfew_action) == (None, None, "WARN")
    assert (r.report_deadline_minute, r.observation_days, r.device_silent_s) == (600, 14, 600)
    assert (r.drift_margin_c, r.drift_window_s, r.alert_suppression_s) == (0.8, 900, 600)
    assert not r.curfew_enabled
