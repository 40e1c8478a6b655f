"""Changing an entry-limit window applies at once (issue 20, behaviour 6).

Raising a household's window from 48 h to 72 h let the next exit through: passes older than
the 48 h in force had already been swept. Pass history is now kept for the longest window a
community may configure (``MAX_ENTRY_LIMIT_WINDOW_S``, 7 days), whatever window is in force, so
a raised window counts the older passes at once; a window above the maximum is refused with a
clear error (docs/rules.md, "Changing a limit's window").
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import streams.engine
from schemas import Codec, InvalidEvent
from schemas.contract import MAX_ENTRY_LIMIT_WINDOW_S, named_examples
from streams.engine import RuleEngine
from streams.rules.config import CommunityRules

CID = "91350100M000100Y43"
T0 = 1_700_000_000_000
S = 1000
H = 3_600 * S
DAY = 24 * H
RES = "res1a2b3c4d5e6f7a8b9c0d"
HOUSEHOLD = "hh00000000000000000000h1"


def _scan(eid: str, t: int, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": eid,
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": "D-01",
        "direction": "OUT",
        "subject_type": "RESIDENT",
        "subject_id": RES,
        "household_id": HOUSEHOLD,
        "method": "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": None,
        "event_time": t,
    }
    ev.update(fields)
    return ev


def _rules(window_s: int) -> dict[str, Any]:
    return {
        "community_id": CID,
        "entry_limit_scope": "HOUSEHOLD",
        "entry_limit_direction": "OUT",
        "entry_limit_count": 1,
        "entry_limit_window_s": window_s,
    }


def _engine() -> RuleEngine:
    e = RuleEngine(allowed_lateness_s=300)
    e.upsert_resident(
        {
            "resident_id": RES,
            "community_id": CID,
            "household_id": HOUSEHOLD,
            "status": "NORMAL",
            "observation_start": None,
            "key_groups": [],
            "face_consent": False,
            "updated_at": 0,
        }
    )
    return e


def _second_exit(before_s: int, after_s: int, at_ms: int, silent: bool = False) -> str:
    """One exit at T0 under ``before_s``; time passes (the community's gates busy every hour,
    or — ``silent`` — nothing but the wall clock), swept every hour; the window is changed to
    ``after_s``; the household's next exit at T0 + ``at_ms`` gets what decision?"""
    e = _engine()
    e.upsert_rules(_rules(before_s))
    assert e.on_scans([_scan("first", T0)]).decisions[0]["decision"] == "ALLOW"
    t = T0 + H
    n = 0
    while t < T0 + at_ms - H:
        if not silent:  # another gate's traffic moves the community's time on
            n += 1
            e.on_scans([_scan(f"other-{n}", t, subject_type="UNKNOWN", subject_id="x" * 24)])
        e.tick(t)
        t += H
    e.upsert_rules(_rules(after_s))
    return str(e.on_scans([_scan("second", T0 + at_ms)]).decisions[0]["decision"])


@pytest.mark.parametrize(
    ("before_s", "after_s", "at_ms", "silent", "decision"),
    [
        pytest.param(48 * 3600, 72 * 3600, 60 * H, False, "DENY", id="48 h -> 72 h, exit at 60 h"),
        pytest.param(
            48 * 3600, 72 * 3600, 60 * H, True, "DENY", id="48 h -> 72 h, silent community"
        ),
        pytest.param(48 * 3600, 72 * 3600, 73 * H, False, "ALLOW", id="48 h -> 72 h, at 73 h"),
        pytest.param(48 * 3600, 24 * 3600, 30 * H, False, "ALLOW", id="48 h -> 24 h, at 30 h"),
        pytest.param(48 * 3600, 48 * 3600, 47 * H, False, "DENY", id="unchanged 48 h, at 47 h"),
        pytest.param(
            24 * 3600,
            MAX_ENTRY_LIMIT_WINDOW_S,
            6 * DAY + 12 * H,
            False,
            "DENY",
            id="24 h -> the maximum 7 d, at 6.5 d",
        ),
        pytest.param(
            24 * 3600,
            MAX_ENTRY_LIMIT_WINDOW_S,
            7 * DAY + H,
            False,
            "ALLOW",
            id="24 h -> the maximum 7 d, at 7 d + 1 h",
        ),
    ],
)
def test_a_changed_window_applies_at_once(
    before_s: int, after_s: int, at_ms: int, silent: bool, decision: str
) -> None:
    assert _second_exit(before_s, after_s, at_ms, silent) == decision


def test_control_keeping_only_the_window_in_force_lets_the_exit_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect, reproduced by keeping pass history for the 48 h in force only."""
    monkeypatch.setattr(streams.engine, "MAX_ENTRY_LIMIT_WINDOW_S", 48 * 3600)
    assert _second_exit(48 * 3600, 72 * 3600, 60 * H) == "ALLOW"


RECORD = dict(named_examples("CommunityRules")["CommunityRules"])


@pytest.mark.parametrize(
    ("window_s", "valid"),
    [
        pytest.param(1, True, id="1 s"),
        pytest.param(172_800, True, id="48 h (default)"),
        pytest.param(MAX_ENTRY_LIMIT_WINDOW_S, True, id="7 d: the maximum"),
        pytest.param(MAX_ENTRY_LIMIT_WINDOW_S + 1, False, id="7 d + 1 s"),
        pytest.param(30 * 86_400, False, id="30 d"),
    ],
)
def test_a_window_above_the_maximum_is_refused_with_a_clear_error(
    window_s: int, valid: bool, caplog: pytest.LogCaptureFixture
) -> None:
    record = {**RECORD, "entry_limit_window_s": window_s}
    if valid:
        Codec().encode("CommunityRules", record)  # what `fangxian load rules` checks
        assert CommunityRules(entry_limit_window_s=window_s).entry_limit_window_s == window_s
        assert CommunityRules.from_record(record).entry_limit_window_s == window_s
        return
    # the loader and the worker's reference store refuse the record ...
    with pytest.raises(InvalidEvent, match=r"entry_limit_window_s must be at most 604800 s"):
        Codec().encode("CommunityRules", record)
    # ... rules built in code too ...
    with pytest.raises(ValueError, match=r"above the maximum 604800 s \(7 days\)"):
        CommunityRules(entry_limit_window_s=window_s)
    # ... and a record that got past them anyway falls back to the default, logged
    with caplog.at_level(logging.WARNING, logger="streams.rules.config"):
        rules = CommunityRules.from_record(record)
    assert rules.entry_limit_window_s == 172_800
    assert "above the maximum 604800 s" in caplog.text
