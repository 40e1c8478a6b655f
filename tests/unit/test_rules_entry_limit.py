"""ExitQuota sliding-window counts and pass de-duplication."""

from __future__ import annotations

import pytest

from streams.rules.config import CommunityRules
from streams.rules.entry_limit import (
    ExitQuota,
    PassDeduper,
    check_entry_limit,
    direction_limited,
    limit_key,
)

H48 = 172_800_000
KEY = ("c", "HOUSEHOLD", "h1")


@pytest.mark.parametrize(
    ("recorded", "t", "count"),
    [
        pytest.param([], 0, 0, id="no passes yet"),
        pytest.param([0], 3_600_000, 1, id="pass an hour ago counts"),
        pytest.param([0], H48 - 1, 1, id="pass just inside 48h counts"),
        pytest.param([0], H48, 0, id="pass exactly 48h ago has left the window"),
        pytest.param([0, 10, 20], 30, 3, id="every pass in the window counts"),
        pytest.param([100], 50, 1, id="later pass in the window counts for an earlier one"),
        pytest.param([H48 + 60], 50, 0, id="later pass beyond the window does not count"),
        pytest.param([20, 0, 10], 30, 3, id="out-of-order records are sorted"),
    ],
)
def test_quota_count(recorded: list[int], t: int, count: int) -> None:
    quota = ExitQuota()
    for r in recorded:
        quota.record(KEY, r)
    assert quota.count(KEY, t, H48) == count


@pytest.mark.parametrize(
    ("passes", "limit", "exceeded"),
    [
        pytest.param(0, 1, False, id="first exit within the quota"),
        pytest.param(1, 1, True, id="second exit in 48h exceeds"),
        pytest.param(1, 2, False, id="second exit allowed with a quota of two"),
    ],
)
def test_check_entry_limit(passes: int, limit: int, exceeded: bool) -> None:
    rules = CommunityRules(entry_limit_scope="HOUSEHOLD", entry_limit_count=limit)
    finding = check_entry_limit(passes, rules, "HOUSEHOLD")
    assert (finding is not None) == exceeded
    if finding is not None:
        assert (finding.action, finding.alert_type) == ("DENY", "ENTRY_LIMIT_EXCEEDED")


@pytest.mark.parametrize(
    ("scope", "household", "expected"),
    [
        pytest.param("NONE", "h1", None, id="no limit without a scope"),
        pytest.param("PERSON", "h1", ("PERSON", "s1"), id="person scope counts the subject"),
        pytest.param("HOUSEHOLD", "h1", ("HOUSEHOLD", "h1"), id="household scope counts household"),
        pytest.param("HOUSEHOLD", None, ("PERSON", "s1"), id="no household falls back to person"),
    ],
)
def test_limit_key(scope: str, household: str | None, expected: tuple[str, str] | None) -> None:
    assert limit_key(CommunityRules(entry_limit_scope=scope), "s1", household) == expected


@pytest.mark.parametrize(
    ("direction", "limited", "expected"),
    [
        pytest.param("OUT", "OUT", True, id="exits count for an exit limit"),
        pytest.param("IN", "OUT", False, id="entries do not count for an exit limit"),
        pytest.param("IN", "ANY", True, id="entries count for any-direction limit"),
    ],
)
def test_direction_limited(direction: str, limited: str, expected: bool) -> None:
    assert direction_limited(direction, limited) == expected


@pytest.mark.parametrize(
    ("first", "second", "repeat"),
    [
        pytest.param(0, 10_000, True, id="repeat scan within 30s counts once"),
        pytest.param(0, 30_000, True, id="repeat at exactly 30s is the same pass"),
        pytest.param(0, 31_000, False, id="scan after 31s is a new pass"),
    ],
)
def test_dedupe(first: int, second: int, repeat: bool) -> None:
    d = PassDeduper()
    key = ("c", "s1", "G-01", "OUT")
    d.record(key, first)
    assert d.is_repeat(key, second, 30_000) == repeat
    assert not d.is_repeat(("c", "s1", "G-02", "OUT"), second, 30_000)


def test_quota_expiry_drops_old_passes() -> None:
    quota = ExitQuota()
    quota.record(KEY, 0)
    quota.record(KEY, H48)
    assert quota.expire({"c": H48 + 1}, {"c": H48}) == 1
    assert quota.count(KEY, H48 + 1, H48) == 1
