"""Who sees what in the console, and the live fold: alerts, their actions, the fan-out that
only hands a subscriber the communities its viewer may see."""

from __future__ import annotations

import pytest

from fangxian.console.live import LiveState, alert_view, apply_action
from fangxian.console.scope import StaffEntry, Viewer

EAST = "91350100M000100Y43"  # county 350100
WEST = "91350100M000200Y50"[:17] + "X"  # same county, another community (check char not needed)
OTHER_COUNTY = "91350200M000300Y21"


def viewer(role: str, community: str = EAST) -> Viewer:
    return Viewer(StaffEntry("st-1", community, "李师傅", role))


@pytest.mark.parametrize(
    ("role", "community", "visible"),
    [
        pytest.param("GATE_GUARD", EAST, True, id="guard sees own community"),
        pytest.param("GATE_GUARD", WEST, False, id="guard does not see a neighbour"),
        pytest.param("COMMUNITY_STAFF", OTHER_COUNTY, False, id="staff: not another county"),
        pytest.param("STREET_OFFICE", WEST, True, id="officer sees a community of the county"),
        pytest.param("STREET_OFFICE", OTHER_COUNTY, False, id="officer: not another county"),
        pytest.param("STREET_OFFICE", "350100", False, id="a bare area code is no community"),
        pytest.param("GATE_GUARD", "x' OR 1=1 --", False, id="garbage is nobody's"),
    ],
)
def test_who_sees_which_community(role: str, community: str, visible: bool) -> None:
    assert viewer(role).can_see(community) is visible


def test_officer_area_is_characters_3_to_8() -> None:
    assert viewer("STREET_OFFICE").area == "350100"
    assert viewer("GATE_GUARD").area == ""
    assert viewer("STREET_OFFICE").visible([WEST, OTHER_COUNTY]) == [EAST, WEST]


def _alert(alert_id: str, community: str = EAST) -> dict:  # type: ignore[type-arg]
    return {
        "alert_id": alert_id,
        "community_id": community,
        "alert_type": "FEVER_CONFIRMED",
        "severity": "CRITICAL",
        "gate_id": "east-gate",
        "device_id": "gun-1",
        "subject_id": "9802b052e8bab1441a0f299ab1dac951",
        "message_zh": "确认发热",
        "message_en": "fever confirmed",
        "event_time": 1_000,
        "created_at": 1_001,
    }


def _action(alert_id: str, kind: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return {
        "alert_id": alert_id,
        "action": kind,
        "staff_ids": ["st-1"],
        "level": 0,
        "detail": {"partition": "2"},
        **extra,
    }


def test_subject_is_masked_in_the_view() -> None:
    view = alert_view(_alert("a1"))
    assert view.subject == "9802****c951"
    assert "9802b052e8bab1441a0f299ab1dac951" not in str(view.to_json())


@pytest.mark.parametrize(
    ("actions", "status", "level"),
    [
        pytest.param(["NOTIFIED"], "OPEN", 1, id="notified stays open at its level"),
        pytest.param(["ACK_REQUESTED"], "ACK_REQUESTED", 0, id="a request shows as pending"),
        pytest.param(["ACK_REQUESTED", "ACKNOWLEDGED"], "ACKNOWLEDGED", 0, id="acknowledged"),
        pytest.param(
            ["RESOLVED", "ACK_REQUESTED"], "RESOLVED", 0, id="status never goes backwards"
        ),
        pytest.param(["NOTIFIED", "ESCALATED"], "OPEN", 2, id="escalation raises the level"),
    ],
)
def test_actions_fold_into_the_alert(actions: list[str], status: str, level: int) -> None:
    view = alert_view(_alert("a1"))
    for n, kind in enumerate(actions, start=1):
        apply_action(view, _action("a1", kind, level=n if kind != "NOTIFIED" else 1))
    assert view.status == status
    assert view.level == level
    assert view.partition == 2


def test_an_action_before_its_alert_is_kept_until_the_alert_comes() -> None:
    state = LiveState()
    state.on_action(_action("a1", "ACKNOWLEDGED"))
    view = state.on_alert(_alert("a1"), partition=0)
    assert view.status == "ACKNOWLEDGED"


def test_fan_out_only_to_viewers_of_the_community() -> None:
    state = LiveState()
    east = state.subscribe(viewer("GATE_GUARD", EAST).can_see)
    west = state.subscribe(viewer("GATE_GUARD", WEST).can_see)
    officer = state.subscribe(viewer("STREET_OFFICE", WEST).can_see)
    state.on_alert(_alert("a1", EAST), partition=0)
    state.on_alert(_alert("a1", EAST), partition=0)  # a redelivery is not a second alert
    assert east.queue.qsize() == 1
    assert west.queue.qsize() == 0
    assert officer.queue.qsize() == 1


@pytest.mark.parametrize(
    ("kinds", "routed"),
    [
        pytest.param([], False, id="not yet taken on by the dispatcher"),
        pytest.param(["ROUTED"], True, id="routed"),
        pytest.param(["ACK_REQUESTED"], False, id="a request is not the dispatcher"),
        pytest.param(["NOTIFIED"], True, id="a delivery implies it was routed"),
    ],
)
def test_routed_is_known_before_a_request_is_sent(kinds: list[str], routed: bool) -> None:
    view = alert_view(_alert("a1"))
    for kind in kinds:
        apply_action(view, _action("a1", kind))
    assert view.routed is routed
