"""The dispatcher and issue 20's early warnings: a suspected cluster goes to the community and
the street office; an updated alert (same id) pages nobody again; a cleared occupancy alert
resolves the open one (its escalation stops)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.dispatch.contacts import Contacts
from streams.dispatch.machine import DispatchMachine
from streams.dispatch.roster import Roster
from tests.unit.test_dispatch_machine import BOX, alert, local_ms, roster

SAME_COUNTY = "91350100MA0000009Y"  # another community of county 350100
OTHER_COUNTY = "91110105MA01234567"


def officer(staff_id: str, community: str, active: bool = True) -> dict[str, Any]:
    return {
        "staff_id": staff_id,
        "community_id": community,
        "display_name": "街道值班室 " + staff_id,
        "role": "STREET_OFFICE",
        "contacts": BOX.seal(Contacts(phone="13700000009"), staff_id, community),
        "active": active,
    }


def with_officers(*records: dict[str, Any]) -> Roster:
    r = roster()
    for rec in records:
        r.apply_staff(rec["staff_id"], rec)
    return r


def first_recipients(m: DispatchMachine, a: dict[str, Any], now: int) -> set[str]:
    m.on_alert(a, partition=0, now_ms=now)
    return {p.staff_id for d in m.due(now) for p in d.recipients}


@pytest.mark.parametrize(
    ("alert_type", "officers", "expected"),
    [
        pytest.param(
            "CLUSTER_SUSPECTED",
            [officer("street", SAME_COUNTY)],
            {"night", "street"},
            id="cluster: the on-duty guard and the street office of the county",
        ),
        pytest.param(
            "CLUSTER_SUSPECTED",
            [officer("street", SAME_COUNTY, active=False), officer("far", OTHER_COUNTY)],
            {"night"},
            id="cluster: an inactive officer or another county's is not paged",
        ),
        pytest.param(
            "FEVER_CONFIRMED",
            [officer("street", SAME_COUNTY)],
            {"night"},
            id="control: a fever goes to the community only",
        ),
    ],
)
def test_cluster_goes_to_the_community_and_the_street_office(
    alert_type: str, officers: list[dict[str, Any]], expected: set[str]
) -> None:
    m = DispatchMachine(with_officers(*officers))
    now = local_ms(15, 2)
    got = first_recipients(m, alert("c1", now, alert_type=alert_type), now)
    assert got == expected


def test_an_updated_cluster_alert_pages_nobody_again() -> None:
    m = DispatchMachine(with_officers(officer("street", SAME_COUNTY)))
    now = local_ms(15, 2)
    first = alert("c1", now, alert_type="CLUSTER_SUSPECTED", details={"cases": "3"})
    assert m.on_alert(first, 0, now)
    sent = m.due(now)
    for d in sent:
        m.begin(d, now)
        m.finish(d, True, now, {})
    grown = {**first, "details": {"cases": "4"}}
    assert m.on_alert(grown, 0, now + 60_000) == []
    assert m.due(now + 60_000) == []


@pytest.mark.parametrize("cleared", [True, False], ids=["cleared", "control: not cleared"])
def test_a_cleared_occupancy_alert_resolves_the_open_one(cleared: bool) -> None:
    m = DispatchMachine(roster())
    now = local_ms(17, 10)
    over = alert(
        "o1",
        now,
        alert_type="OCCUPANCY_OVER_CAPACITY",
        severity="WARNING",
        gate_id=None,
        details={"status": "OVER"},
    )
    m.on_alert(over, 0, now)
    later = now + 5 * 60_000
    if cleared:
        records = m.on_alert(
            {**over, "details": {"status": "CLEARED", "notify": "false"}}, 0, later
        )
        assert [r["action"] for r in records] == ["RESOLVED"]
        assert records[0]["detail"]["via"] == "cleared"
    # the group wait is over and the level-2 step's time has come: only the open alert pages
    due = m.due(now + 11 * 60_000)
    assert (due == []) is cleared


def test_a_cleared_alert_seen_first_is_recorded_not_paged() -> None:
    m = DispatchMachine(roster())
    now = local_ms(17, 10)
    cleared = alert(
        "o2",
        now,
        alert_type="OCCUPANCY_OVER_CAPACITY",
        severity="WARNING",
        details={"status": "CLEARED", "notify": "false"},
    )
    (record,) = m.on_alert(cleared, 0, now)
    assert record["action"] == "SILENCED"
