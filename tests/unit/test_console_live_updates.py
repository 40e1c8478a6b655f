"""The console's live state and issue 20's re-emitted alerts: a later version of an alert it
shows (same id, later created_at, another message) replaces the message and is pushed to the
browsers once; a redelivery or an older version changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from fangxian.console.live import LiveState
from tests.unit.test_console_scope_rules import EAST, _alert, viewer


def version(created_at: int, message: str) -> dict[str, Any]:
    return {
        **_alert("c1"),
        "alert_type": "CLUSTER_SUSPECTED",
        "created_at": created_at,
        "message_zh": message,
    }


@pytest.mark.parametrize(
    ("second", "pushed", "shown"),
    [
        pytest.param(version(5_000, "4 人"), 2, "4 人", id="a grown cluster replaces the message"),
        pytest.param(version(1_001, "3 人"), 1, "3 人", id="a redelivery changes nothing"),
        pytest.param(version(500, "2 人"), 1, "3 人", id="an older version changes nothing"),
    ],
)
def test_a_later_version_of_an_alert_replaces_its_message(
    second: dict[str, Any], pushed: int, shown: str
) -> None:
    state = LiveState()
    browser = state.subscribe(viewer("GATE_GUARD", EAST).can_see)
    state.on_alert(version(1_001, "3 人"), partition=0)
    view = state.on_alert(second, partition=0)
    assert browser.queue.qsize() == pushed
    assert view.message_zh == shown
    assert len(state.alerts) == 1
