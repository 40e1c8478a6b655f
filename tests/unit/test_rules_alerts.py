"""Alert construction: deterministic ids, masking, messages, suppression."""

from __future__ import annotations

import uuid

import pytest

from streams.rules.alerts import (
    TEMPLATES,
    AlertSuppressor,
    alert_id,
    build_alert,
    mask,
    render,
)

SUBJECT = "a1b2c3d4e5f6a7b8c9d0e5f6"


@pytest.mark.parametrize(
    ("token", "masked"),
    [
        pytest.param("a1b2c3d4e5f6", "a1b2****e5f6", id="keep first four and last four"),
        pytest.param("abcdefgh", "****", id="short token fully hidden, its length too"),
        pytest.param("abc", "****", id="three-char token reveals nothing"),
        pytest.param("ab", "****", id="tiny token fully masked"),
        pytest.param(None, "-", id="no token"),
    ],
)
def test_mask(token: str | None, masked: str) -> None:
    assert mask(token) == masked


def test_alert_ids_deterministic_and_distinct() -> None:
    assert alert_id("FEVER_RECHECK", "e1") == alert_id("FEVER_RECHECK", "e1")
    assert alert_id("FEVER_RECHECK", "e1") != alert_id("FEVER_CONFIRMED", "e1")
    assert alert_id("FEVER_RECHECK", "e1") != alert_id("FEVER_RECHECK", "e2")
    assert uuid.UUID(alert_id("X", "y")).version == 5


def test_every_template_renders_with_no_context() -> None:
    for alert_type in TEMPLATES:
        zh, en = render(alert_type, {})
        assert zh and en and "{" not in zh + en


def test_recheck_message_reads_like_the_spec() -> None:
    alert = build_alert(
        alert_type="FEVER_RECHECK",
        severity="WARNING",
        community_id="c",
        cause="e1",
        source_event_ids=["e1"],
        event_time=1,
        created_at=2,
        gate_id="G-01",
        device_id="D-01",
        subject_id=SUBJECT,
        details={"temperature_c": "37.8", "recheck_min": "5"},
    )
    assert alert["message_zh"] == (
        "【复测体温】门岗 G-01 设备 D-01 测得 37.8°C，请在5分钟内复测。对象 a1b2****e5f6"
    )
    assert alert["message_en"] == (
        "[Recheck temperature] Gate G-01 device D-01 read 37.8 °C; recheck within 5 min. "
        "Subject a1b2****e5f6."
    )
    assert SUBJECT not in alert["message_zh"] + alert["message_en"]
    assert alert["subject_id"] == SUBJECT
    assert all(isinstance(v, str) for v in alert["details"].values())


def test_codes_are_translated_in_messages() -> None:
    zh, en = render("HEALTH_CODE_YELLOW", {"action": "DENY", "gate": "G-02", "subject": "x"})
    assert "禁止通行" in zh and "deny" in en


@pytest.mark.parametrize(
    ("first_t", "second_t", "key2", "admitted"),
    [
        pytest.param(0, 60_000, "s1", False, id="alert suppressed within window"),
        pytest.param(0, 600_000, "s1", True, id="alert repeated after window"),
        pytest.param(0, 60_000, "s2", True, id="other subject not suppressed"),
        pytest.param(60_000, 0, "s1", False, id="out-of-order alert within window suppressed"),
    ],
)
def test_suppression(first_t: int, second_t: int, key2: str, admitted: bool) -> None:
    s = AlertSuppressor()
    assert s.admit("HEALTH_CODE_RED", "c", "s1", first_t, 600_000)
    assert s.admit("HEALTH_CODE_RED", "c", key2, second_t, 600_000) == admitted


def test_suppression_is_per_alert_type_and_expires() -> None:
    s = AlertSuppressor()
    assert s.admit("A", "c", "s", 0, 600_000)
    assert s.admit("B", "c", "s", 0, 600_000)
    assert s.expire({"c": 1}) == 2
    assert len(s) == 0
