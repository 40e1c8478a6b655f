"""The dispatcher's pure core: who is on duty, grouping, quiet hours, escalation with an
injected clock, acknowledgement through a signed link, restore from the action log."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.dispatch.acklink import AckClaim, AckSigner, LinkExpired, LinkInvalid
from streams.dispatch.contacts import ContactBox, Contacts, ContactsUnreadable, mask_contact
from streams.dispatch.machine import DispatchMachine, request_record
from streams.dispatch.roster import Roster

CN = ZoneInfo("Asia/Shanghai")
COMMUNITY = "91350100M000100Y43"
BOX = ContactBox("unit-test-roster-key")
MIN = 60_000


def local_ms(day: int, hour: int, minute: int = 0) -> int:
    """2020-02-<day> hh:mm in Shanghai (the 15th is a Saturday)."""
    return int(dt.datetime(2020, 2, day, hour, minute, tzinfo=CN).timestamp() * 1000)


def staff(staff_id: str, name: str, **contacts: str) -> dict[str, Any]:
    return {
        "staff_id": staff_id,
        "community_id": COMMUNITY,
        "display_name": name,
        "role": "GATE_GUARD",
        "contacts": BOX.seal(Contacts(**contacts), staff_id, COMMUNITY),
        "active": True,
    }


def shift(shift_id: str, staff_id: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    return {
        "shift_id": shift_id,
        "community_id": COMMUNITY,
        "staff_id": staff_id,
        "level": 1,
        "gates": [],
        "alert_types": [],
        "min_severity": "INFO",
        "weekdays": [],
        "dates": [],
        "start_minute": start,
        "end_minute": end,
        **extra,
    }


POLICY = {
    "community_id": COMMUNITY,
    "timezone": "Asia/Shanghai",
    "steps": [
        {"level": 1, "after_s": 0, "channels": ["wecom:east"]},
        {"level": 2, "after_s": 600, "channels": ["wecom:east", "sms"]},
    ],
    "repeat_interval_s": 1800,
    "max_repeats": 3,
    "group_wait_s": 30,
    "immediate_severities": ["CRITICAL"],
    "quiet_start_minute": 23 * 60,
    "quiet_end_minute": 7 * 60,
    "bypass_quiet_severities": ["CRITICAL"],
    "silenced_types": ["FEVER_CLEARED"],
}


def roster(policy: dict[str, Any] | None = None) -> Roster:
    r = Roster(BOX)
    r.apply_staff("night", staff("night", "夜班 王师傅", wecom_userid="wang", phone="13800000001"))
    r.apply_staff("day", staff("day", "白班 李师傅", wecom_userid="li"))
    r.apply_staff("lead", staff("lead", "社区 张主任", phone="13900000002"))
    r.apply_shift("n", shift("n", "night", 20 * 60, 8 * 60, gates=["east-gate"]))
    r.apply_shift("d", shift("d", "day", 8 * 60, 20 * 60, weekdays=[1, 2, 3, 4, 5]))
    r.apply_shift("l", shift("l", "lead", 0, 0, level=2))
    r.apply_policy(COMMUNITY, policy or POLICY)
    return r


def alert(alert_id: str, event_ms: int, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "alert_type": "FEVER_CONFIRMED",
        "severity": "CRITICAL",
        "community_id": COMMUNITY,
        "gate_id": "east-gate",
        "message_zh": "东门确认发热",
        "message_en": "East gate fever confirmed",
        "details": {},
        "event_time": event_ms,
        **extra,
    }


@pytest.mark.parametrize(
    ("at", "gate", "level", "expected"),
    [
        pytest.param(
            local_ms(15, 2),
            "east-gate",
            1,
            (1, ["night"]),
            id="02:00 at the east gate: the night guard",
        ),
        pytest.param(
            local_ms(15, 2),
            "west-gate",
            1,
            (2, ["lead"]),
            id="night shift covers only the east gate: next level",
        ),
        pytest.param(
            local_ms(17, 10), "west-gate", 1, (1, ["day"]), id="Monday 10:00: the day shift"
        ),
        pytest.param(
            local_ms(15, 10),
            "west-gate",
            1,
            (2, ["lead"]),
            id="Saturday 10:00: no day shift, next level",
        ),
        pytest.param(
            local_ms(15, 7, 59),
            "east-gate",
            1,
            (1, ["night"]),
            id="07:59 is still the overnight shift",
        ),
        pytest.param(
            local_ms(15, 8, 0),
            "east-gate",
            1,
            (2, ["lead"]),
            id="08:00 Saturday: night shift over, none by day",
        ),
        pytest.param(local_ms(15, 2), "east-gate", 2, (2, ["lead"]), id="level 2 asked directly"),
    ],
)
def test_recipients_are_who_is_on_duty_at_event_time(
    at: int, gate: str, level: int, expected: tuple[int, list[str]]
) -> None:
    found_level, people = roster().recipients(
        COMMUNITY, gate, "FEVER_CONFIRMED", "CRITICAL", level, at
    )
    assert (found_level, [p.staff_id for p in people]) == expected


def test_nobody_on_duty_at_all_still_routes_with_no_recipient() -> None:
    r = Roster(BOX)
    assert r.recipients(COMMUNITY, "g", "FEVER_CONFIRMED", "CRITICAL", 1, local_ms(15, 2)) == (
        1,
        [],
    )


@pytest.mark.parametrize(
    ("extra", "severity", "expected"),
    [
        pytest.param(
            {"min_severity": "CRITICAL"}, "WARNING", [], id="below the shift's minimum severity"
        ),
        pytest.param({"alert_types": ["DEVICE_SILENT"]}, "CRITICAL", [], id="another alert type"),
        pytest.param(
            {"dates": [18307]}, "CRITICAL", ["x"], id="a dated shift on its date (2020-02-15)"
        ),
        pytest.param({"dates": [18308]}, "CRITICAL", [], id="a dated shift on another date"),
        pytest.param({"active": False}, "CRITICAL", [], id="an inactive shift"),
    ],
)
def test_shift_filters(extra: dict[str, Any], severity: str, expected: list[str]) -> None:
    r = Roster(BOX)
    r.apply_staff("x", staff("x", "X"))
    r.apply_shift("s", shift("s", "x", 9 * 60, 17 * 60, **extra))
    people = r.on_duty(COMMUNITY, "g", "FEVER_CONFIRMED", severity, 1, local_ms(15, 10))
    assert [p.staff_id for p in people] == expected


def test_critical_goes_at_once_to_the_on_duty_guard_over_the_policy_channel() -> None:
    m = DispatchMachine(roster())
    now = local_ms(15, 2)
    (routed,) = m.on_alert(alert("a1", now), partition=2, now_ms=now)
    assert routed["action"] == "ROUTED" and routed["detail"]["partition"] == "2"
    (delivery,) = m.due(now)
    assert (delivery.channel, [p.staff_id for p in delivery.recipients], delivery.level) == (
        "wecom:east",
        ["night"],
        1,
    )


def step_through(m: DispatchMachine, now: int, ok: bool = True) -> list[Any]:
    """Send (and record) everything due at ``now``; return the deliveries."""
    sent = m.due(now)
    for d in sent:
        m.begin(d, now)
        m.finish(d, ok, now, {})
    return sent


def test_unacknowledged_critical_escalates_to_level_2_after_ten_minutes_and_stops_on_ack() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    assert [d.level for d in step_through(m, t0)] == [1]
    assert m.due(t0 + 9 * MIN) == [], "nothing before the wait is over"
    escalated = m.due(t0 + 10 * MIN)
    assert sorted(d.channel for d in escalated) == ["sms:lead", "wecom:east"]
    records = m.begin(escalated[0], t0 + 10 * MIN)
    assert [r["action"] for r in records] == ["ESCALATED", "SENDING"]
    m.finish(escalated[0], True, t0 + 10 * MIN, {})
    step_through(m, t0 + 10 * MIN)
    # acknowledged through the link → no repeat at +40 min
    closed = m.apply(request_record("ACK_REQUESTED", "a1", "lead", 0, t0 + 12 * MIN))
    assert [(r["action"], r["staff_ids"]) for r in closed] == [("ACKNOWLEDGED", ["lead"])]
    assert m.due(t0 + 41 * MIN) == []


def test_control_without_ack_the_level_2_step_repeats() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    step_through(m, t0)
    step_through(m, t0 + 10 * MIN)
    repeat = m.due(t0 + 41 * MIN)
    assert repeat and {d.item for d in repeat} == {"r1"} and all(d.level == 2 for d in repeat)


def test_after_an_outage_only_the_latest_repeat_is_sent() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    step_through(m, t0)
    step_through(m, t0 + 10 * MIN)
    assert {d.item for d in m.due(t0 + 100 * MIN)} == {"r3"}, "capped at max_repeats=3"


def test_warnings_of_one_type_and_gate_are_grouped_with_a_count() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 21)
    for i, offset in enumerate((0, 5_000, 20_000)):
        m.on_alert(
            alert(f"w{i}", t0 + offset, severity="WARNING", alert_type="DEVICE_DRIFT"),
            0,
            t0 + offset,
        )
    assert m.due(t0 + 29_000) == [], "waiting for the group"
    (delivery,) = m.due(t0 + 30_000)
    assert (delivery.alert_id, delivery.group_count) == ("w0", 3)
    # a fourth after the window opens a new group
    m.begin(delivery, t0 + 30_000)
    m.on_alert(
        alert("w3", t0 + 31_000, severity="WARNING", alert_type="DEVICE_DRIFT"), 0, t0 + 31_000
    )
    assert m.alerts["w3"].leader == "w3"
    # acknowledging the leader acknowledges its members
    closed = m.close("ACKNOWLEDGED", "w0", "night", t0 + 60_000)
    assert sorted(r["alert_id"] for r in closed) == ["w0", "w1", "w2"]


def test_critical_is_never_grouped() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 21)
    m.on_alert(alert("c1", t0), 0, t0)
    m.on_alert(alert("c2", t0 + 1000), 0, t0 + 1000)
    assert sorted(d.alert_id for d in m.due(t0 + 1000)) == ["c1", "c2"]


@pytest.mark.parametrize(
    ("severity", "at", "released"),
    [
        pytest.param(
            "WARNING",
            local_ms(15, 23, 30),
            local_ms(16, 7),
            id="23:30 warning waits for 07:00 next day",
        ),
        pytest.param(
            "WARNING", local_ms(16, 3), local_ms(16, 7), id="03:00 warning waits for 07:00"
        ),
        pytest.param(
            "CRITICAL", local_ms(16, 3), local_ms(16, 3), id="critical bypasses quiet hours"
        ),
        pytest.param("WARNING", local_ms(16, 12), local_ms(16, 12), id="noon is not quiet"),
    ],
)
def test_quiet_hours(severity: str, at: int, released: int) -> None:
    assert roster().policy(COMMUNITY).quiet_release_ms(at, severity) == released


def test_silenced_types_and_record_only_alerts_are_silenced_not_sent() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    (a,) = m.on_alert(alert("s1", t0, alert_type="FEVER_CLEARED"), 0, t0)
    (b,) = m.on_alert(alert("s2", t0, details={"notify": "false"}), 0, t0)
    assert a["action"] == b["action"] == "SILENCED"
    assert m.due(t0 + 3600_000) == []
    assert m.on_alert(alert("s1", t0, alert_type="FEVER_CLEARED"), 0, t0) == [], "known: no record"


def test_replaying_the_log_restores_timers_and_resends_only_the_in_doubt_delivery() -> None:
    live = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    log: list[dict[str, Any]] = []
    log += live.on_alert(alert("a1", t0), 0, t0)
    log += live.on_alert(alert("a2", t0), 0, t0)
    d1, d2 = sorted(live.due(t0), key=lambda d: d.alert_id)
    log += live.begin(d1, t0)
    log.append(live.finish(d1, True, t0, {}))
    log += live.begin(d2, t0)  # the process dies here: sent, not recorded
    restored = DispatchMachine(roster())
    for record in log + log:  # a duplicated log changes nothing
        restored.apply(record, live=False)
    assert restored.settle() == []
    assert restored.release_in_doubt() == 1
    (again,) = restored.due(t0 + 1000)
    assert (again.alert_id, again.attempt) == ("a2", 2)
    assert {d.alert_id for d in restored.due(t0 + 10 * MIN)} == {"a1", "a2"}, (
        "escalation timers kept"
    )


def test_a_request_in_the_log_without_its_answer_is_answered_after_restore() -> None:
    live = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    log = live.on_alert(alert("a1", t0), 0, t0)
    log.append(request_record("ACK_REQUESTED", "a1", "night", 0, t0 + MIN))
    restored = DispatchMachine(roster())
    for record in log:
        restored.apply(record, live=False)
    assert [r["action"] for r in restored.settle()] == ["ACKNOWLEDGED"]
    assert restored.due(t0 + 20 * MIN) == []


SIGNER = AckSigner("unit-ack-key", "http://127.0.0.1:6070")


def _query(link: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(link).query))


@pytest.mark.parametrize(
    ("change", "now", "error"),
    [
        pytest.param({}, 1000, None, id="genuine link"),
        pytest.param({"s": "someone-else"}, 1000, LinkInvalid, id="another staff id"),
        pytest.param({"a": "other-alert"}, 1000, LinkInvalid, id="another alert"),
        pytest.param({"e": "99999999"}, 1000, LinkInvalid, id="a longer expiry"),
        pytest.param({"p": "1"}, 1000, LinkInvalid, id="another partition"),
        pytest.param({}, 5001, LinkExpired, id="expired"),
        pytest.param({"sig": None}, 1000, LinkInvalid, id="no signature"),
    ],
)
def test_ack_link_verification(
    change: dict[str, str | None], now: int, error: type[Exception] | None
) -> None:
    query = _query(SIGNER.link(AckClaim("a1", "night", 5000, 0)))
    for key, value in change.items():
        if value is None:
            query.pop(key)
        else:
            query[key] = value
    if error is None:
        assert SIGNER.verify(query, now) == AckClaim("a1", "night", 5000, 0)
    else:
        with pytest.raises(error):
            SIGNER.verify(query, now)


def test_control_another_key_does_not_verify() -> None:
    query = _query(AckSigner("another-key", "http://x").link(AckClaim("a1", "night", 5000, 0)))
    with pytest.raises(LinkInvalid):
        SIGNER.verify(query, 1000)


def test_contacts_are_sealed_bound_to_their_record_and_masked() -> None:
    contacts = Contacts(phone="13812345678", wecom_userid="wangshifu")
    blob = BOX.seal(contacts, "st1", COMMUNITY)
    assert b"13812345678" not in blob and b"wangshifu" not in blob
    assert BOX.open(blob, "st1", COMMUNITY) == contacts
    assert "13812345678" not in repr(contacts) and "138****5678" in repr(contacts)
    with pytest.raises(ContactsUnreadable):
        BOX.open(blob, "st2", COMMUNITY)  # copied onto another record
    with pytest.raises(ContactsUnreadable):
        ContactBox("another key").open(blob, "st1", COMMUNITY)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        pytest.param("13812345678", "138****5678", id="mobile"),
        pytest.param("ou_7d8a6e6df7", "ou*********f7", id="open id"),
        pytest.param("abc", "***", id="short"),
    ],
)
def test_mask_contact(value: str, masked: str) -> None:
    assert mask_contact(value) == masked


def test_a_step_without_any_channel_is_a_visible_failed_delivery_not_nothing() -> None:
    policy = {**POLICY, "steps": [{"level": 1, "after_s": 0, "channels": []}]}
    m = DispatchMachine(roster(policy))
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    (delivery,) = m.due(t0)
    assert delivery.channel == "unrouted"


def test_default_channels_serve_a_step_that_names_none() -> None:
    policy = {**POLICY, "steps": [{"level": 1, "after_s": 0, "channels": []}]}
    m = DispatchMachine(roster(policy), default_channels=["webhook:console"])
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    assert [d.channel for d in m.due(t0)] == ["webhook:console"]


def test_a_shorter_policy_loaded_later_takes_effect_for_open_alerts() -> None:
    r = roster()
    m = DispatchMachine(r)
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    step_through(m, t0)
    assert m.due(t0 + 2 * MIN) == []
    steps = [{**POLICY["steps"][0]}, {**POLICY["steps"][1], "after_s": 60}]
    r.apply_policy(COMMUNITY, {**POLICY, "steps": steps})
    m.wake_all()
    assert {d.level for d in m.due(t0 + 2 * MIN)} == {2}


@pytest.mark.parametrize(
    ("retry_after_ms", "due_again"),
    [
        pytest.param(30_000, True, id="a passing failure (rate limit, 5xx) is sent again"),
        pytest.param(None, False, id="a permanent failure (bad signature) is final"),
    ],
)
def test_failed_delivery_retry(retry_after_ms: int | None, due_again: bool) -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    (d,) = m.due(t0)
    m.begin(d, t0)
    failed = m.finish(d, False, t0, {"code": "45009"}, retry_after_ms=retry_after_ms)
    assert failed["action"] == "DELIVERY_FAILED"
    assert m.due(t0 + 29_000) == []
    again = m.due(t0 + 30_000)
    assert [x.attempt for x in again] == ([2] if due_again else [])


def test_retries_stop_after_max_attempts() -> None:
    m = DispatchMachine(roster())
    t0 = local_ms(15, 2)
    m.on_alert(alert("a1", t0), 0, t0)
    now = t0
    attempts = []
    for _ in range(8):
        ds = m.due(now)
        if not ds:
            break
        (d,) = ds
        attempts.append(d.attempt)
        m.begin(d, now)
        m.finish(d, False, now, {}, retry_after_ms=1000)
        now += 1000
    assert attempts == [1, 2, 3, 4, 5]
