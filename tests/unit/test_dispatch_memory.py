"""The dispatcher's memory over a simulated day: alerts arrive all day, are paged, escalate,
are acknowledged or resolved (by link or console, some twice), a few are redelivered late;
the pure machine is driven the way its stage loop drives it (take alerts on, start what is
due and record the outcome, fold the requests and the records read back from alert.actions,
walk the open alerts for the gauges once a tick, prune). Control: without ``prune`` — the
machine as it was — every alert of the day is still held at midnight and walked every tick;
with it, only the working set is held and the closed ids are bounded by their TTL."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.dispatch.closed import ClosedAlerts
from streams.dispatch.machine import DispatchMachine, request_record
from streams.dispatch.meter import open_alerts
from tests.unit.test_dispatch_machine import alert, local_ms, roster

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
TICK = 30 * SECOND
GATES = ("east-gate", "west-gate", "north-gate")
#: alert types of the day, with their severity and share
MIX = (
    ("FEVER_CONFIRMED", "CRITICAL", 0.2),
    ("FEVER_RECHECK", "WARNING", 0.4),
    ("PASS_INVALID", "WARNING", 0.3),
    ("FEVER_CLEARED", "INFO", 0.1),  # the policy silences this type: never held as state
)


@dataclass
class Day:
    alerts: int = 0
    silenced_at_intake: int = 0
    duplicates: int = 0
    duplicates_taken: int = 0  # a duplicate taken on again (must stay 0)
    late_requests_answered: int = 0  # a second tap answered with a second close (must stay 0)
    held_peak: int = 0
    held_end: int = 0
    silenced_end: int = 0
    closed_ids_peak: int = 0
    closed_ids_end: int = 0
    walked: int = 0  # AlertStates the gauge walk visited over the day
    deliveries: list[str] = field(default_factory=list)


def simulate_day(*, prune: bool, per_hour: int = 200, seed: int = 22) -> Day:
    rng = random.Random(seed)
    m = DispatchMachine(roster(), ["wecom:east"])
    m.closed = ClosedAlerts(ttl_ms=6 * HOUR)
    day = Day()
    start = local_ms(17, 0)  # Monday 2020-02-17, 00:00 in Shanghai
    requests: list[tuple[int, str, str]] = []  # (at, kind, alert_id)
    redeliver: list[tuple[int, dict[str, Any]]] = []
    closed_seen: set[str] = set()
    n = 0

    def fold(records: list[dict[str, Any]]) -> None:
        # what the stage produces is read back from alert.actions and folded in again
        for record in records:
            for derived in [record, *m.apply(record)]:
                m.apply(derived)
                if derived["action"] in ("ACKNOWLEDGED", "RESOLVED"):
                    closed_seen.add(derived["alert_id"])

    for now in range(start, start + 24 * HOUR, TICK):
        # alerts of this tick (fewer at night), and the ones the consumer re-reads
        rate = per_hour * (0.4 if local_hour(now, start) < 6 else 1.2)
        for _ in range(poisson(rng, rate * TICK / HOUR)):
            n += 1
            alert_type, severity = pick(rng)
            a = alert(
                f"a{n}",
                now - rng.randrange(0, 5 * SECOND),
                alert_type=alert_type,
                severity=severity,
                gate_id=rng.choice(GATES),
            )
            records = m.on_alert(a, 0, now)
            fold(records)
            day.alerts += 1
            if records and records[0]["action"] == "SILENCED":
                day.silenced_at_intake += 1
                continue
            if rng.random() < 0.02:  # a rebalance makes the consumer read it again later
                redeliver.append((now + rng.choice((TICK, 30 * MINUTE, 3 * HOUR)), a))
            # staff answer: most acknowledge in minutes, some resolve later from the console
            if rng.random() < 0.8:
                requests.append(
                    (now + rng.randrange(1, 25) * MINUTE, "ACK_REQUESTED", a["alert_id"])
                )
            else:
                requests.append(
                    (now + rng.randrange(20, 120) * MINUTE, "RESOLVE_REQUESTED", a["alert_id"])
                )
            if rng.random() < 0.05:  # a second tap on the link, an hour later
                requests.append((now + HOUR + 25 * MINUTE, "ACK_REQUESTED", a["alert_id"]))
        for at, a in [r for r in redeliver if r[0] <= now]:
            redeliver.remove((at, a))
            day.duplicates += 1
            if m.on_alert(a, 0, now):
                day.duplicates_taken += 1
        # messages due: SENDING, the channel's answer, the outcome (5 % fail for a passing reason)
        for delivery in m.due(now):
            day.deliveries.append(f"{delivery.delivery_id}#{delivery.attempt}")
            m.begin(delivery, now)
            ok = rng.random() >= 0.05
            m.finish(delivery, ok, now, {}, retry_after_ms=None if ok else 60 * SECOND)
        # requests from the links and the console
        due_requests = sorted(r for r in requests if r[0] <= now)
        for at, kind, alert_id in due_requests:
            requests.remove((at, kind, alert_id))
            answered = m.apply(request_record(kind, alert_id, "day", 0, at))
            if answered and alert_id in closed_seen:
                day.late_requests_answered += 1
            fold(answered)
        # the gauges walk what is held, once a tick (the stage: once a second), then prune
        if prune:
            m.prune(now)
        day.walked += len(m.alerts)
        open_alerts(m.alerts.values(), now)
        day.held_peak = max(day.held_peak, len(m.alerts) + len(m.silenced))
        day.closed_ids_peak = max(day.closed_ids_peak, len(m.closed))
    day.held_end = len(m.alerts)
    day.silenced_end = len(m.silenced)
    day.closed_ids_end = len(m.closed)
    return day


def local_hour(now: int, midnight: int) -> int:
    return (now - midnight) // HOUR


def poisson(rng: random.Random, mean: float) -> int:
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def pick(rng: random.Random) -> tuple[str, str]:
    roll, acc = rng.random(), 0.0
    for alert_type, severity, share in MIX:
        acc += share
        if roll < acc:
            return alert_type, severity
    return MIX[-1][0], MIX[-1][1]


@pytest.fixture(scope="module")
def days() -> dict[bool, Day]:
    return {False: simulate_day(prune=False), True: simulate_day(prune=True)}


def test_control_without_pruning_every_alert_of_the_day_is_held_and_walked(
    days: dict[bool, Day],
) -> None:
    before = days[False]
    taken_on = before.alerts - before.silenced_at_intake
    assert before.held_end == taken_on, "every alert of the day still held at midnight"
    assert before.silenced_end == before.silenced_at_intake
    assert before.held_peak == before.alerts, "held only grows"


def test_with_pruning_only_the_working_set_is_held(days: dict[bool, Day]) -> None:
    before, after = days[False], days[True]
    print(
        f"\nsimulated day: {after.alerts} alerts ({after.silenced_at_intake} silenced at intake),"
        f" {after.duplicates} redelivered; held at midnight {before.held_end} → "
        f"{after.held_end}, peak {before.held_peak} → {after.held_peak}; closed ids kept at "
        f"midnight {after.closed_ids_end} (peak {after.closed_ids_peak}); AlertStates walked "
        f"by the gauges over the day {before.walked} → {after.walked}"
    )
    assert after.alerts == before.alerts > 3000
    assert after.held_peak < before.alerts / 20, "at most the alerts of the last hours are held"
    assert after.held_end < before.held_end / 50
    assert after.walked < before.walked / 20
    # the closed ids: at most the alerts closed within the TTL (6 h of a 24 h day)
    assert after.closed_ids_peak < after.alerts * 0.45


def test_pruning_changes_nothing_anyone_sees(days: dict[bool, Day]) -> None:
    before, after = days[False], days[True]
    assert after.deliveries == before.deliveries, "the same messages, in the same order"
    assert before.duplicates == after.duplicates > 20
    assert before.duplicates_taken == after.duplicates_taken == 0, "late duplicates still skipped"
    assert before.late_requests_answered == after.late_requests_answered == 0, "no second close"


@pytest.mark.parametrize(
    ("late_ms", "taken_again"),
    [
        pytest.param(1 * MINUTE, False, id="a minute after it closed: skipped"),
        pytest.param(5 * HOUR, False, id="five hours after: skipped (within the TTL)"),
        pytest.param(7 * HOUR, True, id="seven hours after: the id has expired, taken on again"),
    ],
)
def test_a_late_duplicate_of_a_closed_and_pruned_alert(late_ms: int, taken_again: bool) -> None:
    m = DispatchMachine(roster(), ["wecom:east"])
    m.closed = ClosedAlerts(ttl_ms=6 * HOUR)
    t0 = local_ms(17, 10)
    a = alert("a1", t0)
    m.on_alert(a, 0, t0)
    closed = m.apply(request_record("ACK_REQUESTED", "a1", "day", 0, t0 + MINUTE))
    assert [r["action"] for r in closed] == ["ACKNOWLEDGED"]
    assert m.prune(t0 + MINUTE) == 1 and "a1" not in m.alerts and "a1" in m.closed
    assert m.closed.count("ACKNOWLEDGED") == 1, "what the demo's summary counts"
    # a second tap, and the ROUTED read back late, change nothing
    assert m.apply(request_record("ACK_REQUESTED", "a1", "day", 0, t0 + 2 * MINUTE)) == []
    m.apply(closed[0])
    assert "a1" not in m.alerts
    later = t0 + MINUTE + late_ms
    m.prune(later)
    assert bool(m.on_alert(a, 0, later)) is taken_again


def test_a_closed_alert_with_a_delivery_in_flight_stays_until_its_outcome() -> None:
    m = DispatchMachine(roster(), ["wecom:east"])
    t0 = local_ms(17, 10)
    m.on_alert(alert("a1", t0), 0, t0)
    (delivery,) = m.due(t0)
    m.begin(delivery, t0)  # SENDING: the message is with the channel
    m.apply(request_record("ACK_REQUESTED", "a1", "day", 0, t0 + SECOND))
    assert m.prune(t0 + SECOND) == 0, "its NOTIFIED is still to be recorded"
    m.finish(delivery, True, t0 + 2 * SECOND, {})
    assert m.prune(t0 + 2 * SECOND) == 1


def test_a_group_leader_stays_while_a_member_is_open() -> None:
    m = DispatchMachine(roster(), ["wecom:east"])
    t0 = local_ms(17, 10)
    warning = {"alert_type": "FEVER_RECHECK", "severity": "WARNING"}
    m.on_alert(alert("lead", t0, **warning), 0, t0)
    m.on_alert(alert("member", t0 + SECOND, **warning), 0, t0 + SECOND)
    assert m.alerts["member"].leader == "lead"
    derived = m.apply(request_record("ACK_REQUESTED", "lead", "day", 0, t0 + 2 * SECOND))
    # the member's ACKNOWLEDGED is produced, not yet read back: the leader must stay
    assert m.prune(t0 + 2 * SECOND) == 0
    for record in derived:
        m.apply(record)
    assert m.prune(t0 + 3 * SECOND) == 2 and m.alerts == {}
