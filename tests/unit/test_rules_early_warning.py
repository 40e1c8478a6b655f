"""Early warning over windows (issue 20): CLUSTER_SUSPECTED, OCCUPANCY_OVER_CAPACITY and
GATE_ANOMALY as tables of cases — thresholds, window edges, late and out-of-order events,
growth updates, clearing, and memory of a community that goes silent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from streams.engine import READING, REPORT, SCAN, Item, RuleEngine
from streams.rules.config import CommunityRules
from streams.rules.early_warning import anomaly_threshold, is_refusal, occupancy_delta

CID = "91350100M000100Y43"
T0 = 1_700_000_000_000  # 2023-11-15 06:13:20 Asia/Shanghai (20 s past a minute)
S = 1000
MIN = 60 * S
H = 60 * MIN
LATENESS = 300 * S
EW_TYPES = ("CLUSTER_SUSPECTED", "OCCUPANCY_OVER_CAPACITY", "GATE_ANOMALY")


def resident(rid: str, building: str | None = "12", household: str | None = None) -> dict[str, Any]:
    return {
        "resident_id": rid,
        "community_id": CID,
        "household_id": household or "hh-" + rid,
        "status": "NORMAL",
        "observation_start": None,
        "key_groups": [],
        "face_consent": False,
        "updated_at": 0,
        "building_id": building,
    }


def report(
    eid: str, t: int, rid: str, temp: float | None = 36.6, symptoms: Iterable[str] = ("DRY_COUGH",)
) -> Item:
    ev = {
        "event_id": eid,
        "community_id": CID,
        "resident_id": rid,
        "report_date": 19676,
        "temperature_c": temp,
        "symptoms": list(symptoms),
        "event_time": T0 + t,
    }
    return (REPORT, ev, None)


def scan(
    eid: str,
    t: int,
    subject: str,
    direction: str = "IN",
    subject_type: str = "RESIDENT",
    gate: str = "G-01",
    **more: Any,
) -> Item:
    ev = {
        "event_id": eid,
        "community_id": CID,
        "gate_id": gate,
        "device_id": "D-" + gate,
        "direction": direction,
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": None,
        "method": "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": None,
        "event_time": T0 + t,
        **more,
    }
    return (SCAN, ev, None)


def reading(eid: str, t: int, subject: str, temp: float, sensor: str = "INFRARED_GATE") -> Item:
    ev = {
        "event_id": eid,
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": "D-G-01" if sensor == "INFRARED_GATE" else "H-01",
        "subject_id": subject,
        "temperature_c": temp,
        "ambient_c": None,
        "sensor": sensor,
        "event_time": T0 + t,
    }
    return (READING, ev, None)


def tick_clock(t: int, n: int = 0) -> Item:
    """A staff pass (counted out of occupancy: OUT of nobody inside stays at zero) that moves
    the community's event time to ``t``."""
    return scan(f"clock-{t}-{n}", t, "staff-clock", direction="OUT", subject_type="STAFF")


def engine(residents: Iterable[dict[str, Any]] = (), **rules: Any) -> RuleEngine:
    e = RuleEngine(allowed_lateness_s=LATENESS // S)
    for r in residents:
        e.upsert_resident(r)
    e.upsert_resident({**resident("staff-clock", None), "resident_id": "staff-clock"})
    e.upsert_rules({"community_id": CID, **rules})
    return e


def run(e: RuleEngine, batches: Iterable[Iterable[Item]]) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for batch in batches:
        out = e.on_events(sorted(batch, key=e.sort_key))
        alerts.extend(a for a in out.alerts if a["alert_type"] in EW_TYPES)
    return alerts


def one_by_one(items: Iterable[Item]) -> list[list[Item]]:
    return [[i] for i in sorted(items, key=lambda i: (i[1]["event_time"], i[1]["event_id"]))]


def latest(alerts: list[dict[str, Any]], alert_type: str) -> dict[str, dict[str, Any]]:
    """The last version of each alert of a type, by id."""
    return {a["alert_id"]: a for a in alerts if a["alert_type"] == alert_type}


PEOPLE = [resident(f"res-{i:02d}") for i in range(8)]
SEALED_LATER = 80 * H  # a clock event this late seals every case of the tables


# ------------------------------------------------------------------ CLUSTER_SUSPECTED
@pytest.mark.parametrize(
    ("cases", "rules", "expected"),
    [
        pytest.param(
            [(0, "res-00"), (10 * H, "res-01"), (20 * H, "res-02")],
            {},
            [3],
            id="three persons of one building within 72 h: one alert of three cases",
        ),
        pytest.param(
            [(0, "res-00"), (10 * H, "res-01")], {}, [], id="two persons: below the threshold"
        ),
        pytest.param(
            [(0, "res-00"), (1 * H, "res-00"), (2 * H, "res-00")],
            {},
            [],
            id="one person three times is one case",
        ),
        pytest.param(
            [(0, "res-00"), (H, "res-01"), (72 * H, "res-02")],
            {},
            [],
            id="window edge: the first case exactly 72 h before the third is out",
        ),
        pytest.param(
            [(0, "res-00"), (H, "res-01"), (72 * H - S, "res-02")],
            {},
            [3],
            id="window edge: one second inside",
        ),
        pytest.param(
            [(0, "res-00"), (H, "res-01"), (2 * H, "res-02"), (3 * H, "res-03"), (4 * H, "res-01")],
            {},
            [4],
            id="growth: a fourth person updates the alert, a repeat person does not",
        ),
        pytest.param(
            [(0, "res-00"), (H, "res-01")],
            {"cluster_min_cases": 2},
            [2],
            id="the threshold comes from CommunityRules",
        ),
        pytest.param(
            [(0, "res-00"), (H, "res-01"), (2 * H, "res-02")],
            {"cluster_window_s": 3600},
            [],
            id="the window comes from CommunityRules",
        ),
        pytest.param(
            [(0, "res-00"), (H, "res-01"), (2 * H, "res-02")],
            {"cluster_min_cases": 0},
            [],
            id="cluster_min_cases 0 turns it off",
        ),
    ],
)
def test_cluster_thresholds_and_window(
    cases: list[tuple[int, str]], rules: dict[str, Any], expected: list[int]
) -> None:
    e = engine(PEOPLE, **rules)
    items = [report(f"rep-{i}", t, rid) for i, (t, rid) in enumerate(cases)]
    alerts = run(e, one_by_one([*items, tick_clock(SEALED_LATER)]))
    found = latest(alerts, "CLUSTER_SUSPECTED")
    assert sorted(int(a["details"]["cases"]) for a in found.values()) == expected
    for a in found.values():
        assert a["severity"] == "CRITICAL"
        assert a["details"]["case_list"].count("、") == int(a["details"]["cases"]) - 1
        assert "res-0" not in a["message_zh"] + a["message_en"] + a["details"]["case_list"]
        assert a["event_time"] == T0 + cases[0][0]


def test_cluster_growth_is_the_same_alert_re_emitted_with_more_cases() -> None:
    e = engine(PEOPLE)
    items = [report(f"rep-{i}", i * H, f"res-{i:02d}") for i in range(5)]
    alerts = run(e, one_by_one([*items, tick_clock(SEALED_LATER)]))
    assert len({a["alert_id"] for a in alerts}) == 1
    assert [a["details"]["cases"] for a in alerts] == ["3", "4", "5"]
    assert {a["event_time"] for a in alerts} == {T0}  # one row in the sink, replaced


@pytest.mark.parametrize(
    ("scope", "people", "expected"),
    [
        pytest.param(
            "BUILDING",
            [resident("a", "1"), resident("b", "1"), resident("c", "2")],
            [],
            id="building scope: two buildings do not add up",
        ),
        pytest.param(
            "COMMUNITY",
            [resident("a", "1"), resident("b", "1"), resident("c", "2")],
            [3],
            id="community scope: they do",
        ),
        pytest.param(
            "HOUSEHOLD",
            [resident("a", "1", "h1"), resident("b", "1", "h1"), resident("c", "1", "h2")],
            [],
            id="household scope: one building, two households",
        ),
        pytest.param(
            "BUILDING",
            [resident("a", None, "h1"), resident("b", None, "h1"), resident("c", None, "h1")],
            [3],
            id="no building in the register: the household stands in",
        ),
    ],
)
def test_cluster_scope(scope: str, people: list[dict[str, Any]], expected: list[int]) -> None:
    e = engine(people, cluster_scope=scope)
    items = [
        report(f"rep-{p['resident_id']}", i * H, p["resident_id"]) for i, p in enumerate(people)
    ]
    found = latest(run(e, one_by_one([*items, tick_clock(SEALED_LATER)])), "CLUSTER_SUSPECTED")
    assert sorted(int(a["details"]["cases"]) for a in found.values()) == expected


@pytest.mark.parametrize(
    ("case_items", "expected"),
    [
        pytest.param(
            [
                report("r1", 0, "res-00", symptoms=()),
                report("r2", H, "res-01", symptoms=()),
                report("r3", 2 * H, "res-02", symptoms=()),
            ],
            [],
            id="clean reports are no cases",
        ),
        pytest.param(
            [
                report("r1", 0, "res-00", temp=38.2, symptoms=()),
                report("r2", H, "res-01", symptoms=("FATIGUE",)),
                reading("g1", 2 * H, "res-02", 38.6),
                reading("h1", 2 * H + 2 * MIN, "res-02", 38.5, "INFRARED_HANDHELD"),
            ],
            [3],
            id="a reported fever, symptoms and a fever confirmed at the gate",
        ),
        pytest.param(
            [
                report("r1", 0, "res-00", symptoms=()),
                report("r2", H, "res-01", symptoms=()),
                reading("g1", 2 * H, "res-02", 38.6),
                reading("h1", 2 * H + 2 * MIN, "res-02", 36.6, "INFRARED_HANDHELD"),
            ],
            [],
            id="a gate fever cleared on recheck is no case",
        ),
    ],
)
def test_what_counts_as_a_case(case_items: list[Item], expected: list[int]) -> None:
    e = engine(PEOPLE)
    found = latest(run(e, one_by_one([*case_items, tick_clock(SEALED_LATER)])), "CLUSTER_SUSPECTED")
    assert sorted(int(a["details"]["cases"]) for a in found.values()) == expected


def test_a_new_cluster_after_the_window_is_a_new_alert() -> None:
    e = engine(PEOPLE)
    first = [report(f"a{i}", i * H, f"res-{i:02d}") for i in range(3)]
    second = [report(f"b{i}", 100 * H + i * H, f"res-{i + 3:02d}") for i in range(3)]
    alerts = run(e, one_by_one([*first, *second, tick_clock(180 * H)]))
    assert len(latest(alerts, "CLUSTER_SUSPECTED")) == 2


@pytest.mark.parametrize("order", ["in order", "reversed", "one batch"])
def test_cluster_out_of_order_within_the_lateness_gives_the_same_alert(order: str) -> None:
    items = [report(f"rep-{i}", i * MIN, f"res-{i:02d}") for i in range(4)]
    clock = [tick_clock(0), tick_clock(4 * MIN, 1)]
    reference = run(engine(PEOPLE), one_by_one([*items, *clock, tick_clock(SEALED_LATER)]))
    if order == "reversed":
        batches = [[i] for i in reversed(items + clock)] + [[tick_clock(SEALED_LATER)]]
    elif order == "one batch":
        batches = [[*items, *clock], [tick_clock(SEALED_LATER)]]
    else:
        batches = one_by_one([*items, *clock, tick_clock(SEALED_LATER)])
    got = run(engine(PEOPLE), batches)
    assert [(a["alert_id"], a["details"]) for a in got] == [
        (a["alert_id"], a["details"]) for a in reference
    ]
    assert [a["details"]["cases"] for a in got] == ["3", "4"]


def test_cluster_waits_for_the_sealed_time_and_a_late_case_still_counts() -> None:
    e = engine(PEOPLE)
    assert (
        run(
            e,
            [
                [
                    report("r0", 0, "res-00"),
                    report("r1", MIN, "res-01"),
                    report("r2", 2 * MIN, "res-02"),
                ]
            ],
        )
        == []
    )
    # the community's time passes the cases by less than the lateness: nothing yet
    assert run(e, [[tick_clock(2 * MIN + LATENESS - S)]]) == []
    alerts = run(e, [[tick_clock(2 * MIN + LATENESS + MIN)]])
    assert [a["details"]["cases"] for a in alerts] == ["3"]
    # a case from long before the sealed time (late) is decided at once and joins the episode
    late = run(e, [[report("r3", 30 * S, "res-03")]])
    assert [(a["alert_id"], a["details"]["cases"]) for a in late] == [(alerts[0]["alert_id"], "4")]


# ------------------------------------------------------------------ OCCUPANCY_OVER_CAPACITY
@pytest.mark.parametrize(
    ("passes", "capacity", "expected"),
    [
        pytest.param([("IN", "RESIDENT")] * 3, 3, [], id="at capacity is not over it"),
        pytest.param([("IN", "RESIDENT")] * 4, 3, ["OVER"], id="one over capacity"),
        pytest.param(
            [("IN", "RESIDENT")] * 4 + [("OUT", "RESIDENT")],
            3,
            ["OVER", "CLEARED"],
            id="back at capacity: cleared (the same alert)",
        ),
        pytest.param(
            [("IN", "VEHICLE")] * 5,
            3,
            [],
            id="vehicles are not persons",
        ),
        pytest.param(
            [("IN", "UNKNOWN")] * 5,
            3,
            [],
            id="refused passes did not pass",
        ),
        pytest.param(
            [("OUT", "RESIDENT")] * 3 + [("IN", "RESIDENT")] * 4,
            3,
            ["OVER"],
            id="never below zero: people inside before counting began went out",
        ),
        pytest.param(
            [("IN", "RESIDENT")] * 9,
            0,
            [],
            id="capacity 0: no limit",
        ),
    ],
)
def test_occupancy_over_capacity_and_cleared(
    passes: list[tuple[str, str]], capacity: int, expected: list[str]
) -> None:
    e = engine(PEOPLE, capacity_persons=capacity)
    items = [
        scan(f"p{i}", i * MIN, f"res-{i % 8:02d}" if st == "RESIDENT" else f"x{i}", d, st)
        for i, (d, st) in enumerate(passes)
    ]
    alerts = run(e, one_by_one([*items, tick_clock(len(passes) * MIN + 2 * LATENESS)]))
    assert [a["details"]["status"] for a in alerts] == expected
    assert len({a["alert_id"] for a in alerts}) == min(1, len(alerts))
    if expected[-1:] == ["CLEARED"]:
        assert alerts[-1]["details"]["notify"] == "false"
        assert alerts[-1]["event_time"] == alerts[0]["event_time"]


def test_occupancy_is_carried_across_midnight() -> None:
    # T0 is 06:13 local: 18 h later is past midnight
    e = engine(PEOPLE, capacity_persons=3)
    evening = [scan(f"in{i}", 17 * H + i * MIN, f"res-{i:02d}") for i in range(3)]
    morning = [scan("in-late", 19 * H, "res-05")]
    alerts = run(e, one_by_one([*evening, *morning, tick_clock(20 * H)]))
    assert [a["details"]["inside"] for a in alerts] == ["4"]
    assert e.windows.occupancy.inside(CID) == 4


def test_occupancy_counts_a_re_scan_in_the_dedupe_window_once() -> None:
    e = engine(
        PEOPLE,
        capacity_persons=1,
        entry_limit_scope="PERSON",
        entry_limit_direction="ANY",
        entry_limit_count=50,
    )
    items = [scan("a", 0, "res-00"), scan("a2", 20 * S, "res-00"), tick_clock(2 * LATENESS)]
    assert run(e, one_by_one(items)) == []
    assert e.windows.occupancy.inside(CID) == 1


@pytest.mark.parametrize("order", ["in order", "reversed", "one batch"])
def test_occupancy_same_alerts_in_any_order_within_the_lateness(order: str) -> None:
    items = [scan(f"in{i}", i * 10 * S, f"res-{i:02d}") for i in range(5)]
    items += [scan(f"out{i}", 60 * S + i * 10 * S, f"res-{i:02d}", "OUT") for i in range(3)]
    end = [tick_clock(20 * MIN)]
    reference = run(engine(PEOPLE, capacity_persons=3), one_by_one(items + end))
    if order == "reversed":
        batches = [[i] for i in reversed(items)] + [end]
    elif order == "one batch":
        batches = [items, end]
    else:
        batches = one_by_one(items + end)
    got = run(engine(PEOPLE, capacity_persons=3), batches)
    assert [(a["alert_id"], a["details"]) for a in got] == [
        (a["alert_id"], a["details"]) for a in reference
    ]
    assert [a["details"]["status"] for a in got] == ["OVER", "CLEARED"]


# ------------------------------------------------------------------ GATE_ANOMALY
def refusals(n: int, start: int, every: int, gate: str = "G-01", tag: str = "u") -> list[Item]:
    return [
        scan(f"{tag}{i}", start + i * every, f"{tag}-x{i}", subject_type="UNKNOWN", gate=gate)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param(refusals(10, 0, 30 * S), 1, id="ten refusals in ten minutes, no baseline"),
        pytest.param(refusals(9, 0, 30 * S), 0, id="nine: below the minimum"),
        pytest.param(refusals(10, 0, 70 * S), 0, id="ten spread over 11.7 minutes"),
        pytest.param(
            refusals(36, 0, 100 * S, tag="b") + refusals(12, 61 * MIN, 30 * S),
            0,
            id="baseline 36/h (6 per 10 min): 12 is under 3x",
        ),
        pytest.param(
            refusals(36, 0, 100 * S, tag="b") + refusals(18, 61 * MIN, 30 * S),
            1,
            id="baseline 36/h: 18 is 3x",
        ),
        pytest.param(
            refusals(6, 0, 30 * S, gate="G-01") + refusals(6, 0, 30 * S, gate="G-02", tag="v"),
            0,
            id="two gates are counted apart",
        ),
        pytest.param(
            refusals(10, 0, 30 * S) + refusals(10, 15 * MIN, 30 * S, tag="w"),
            2,
            id="two bursts with a quiet gap: two episodes",
        ),
        pytest.param(refusals(30, 0, 30 * S), 1, id="a long burst is one episode"),
    ],
)
def test_gate_anomaly(items: list[Item], expected: int) -> None:
    e = engine()
    last = max(i[1]["event_time"] for i in items) - T0
    alerts = run(e, one_by_one([*items, tick_clock(last + 30 * MIN)]))
    found = latest(alerts, "GATE_ANOMALY")
    assert len(found) == len(alerts) == expected
    for a in found.values():
        assert a["severity"] == "WARNING" and a["gate_id"] in ("G-01", "G-02")
        assert int(a["details"]["refusals"]) >= int(a["details"]["threshold"])


def test_gate_anomaly_counts_only_refusals_that_say_something_about_the_gate() -> None:
    assert is_refusal("DENY", ["UNKNOWN_SUBJECT"])
    assert is_refusal("DENY", ["HEALTH_CODE_RED", "CURFEW_VIOLATION"])
    assert not is_refusal("DENY", ["QUARANTINE_BREACH"])
    assert not is_refusal("DENY", ["ENTRY_LIMIT_EXCEEDED"])
    assert not is_refusal("WARN", ["HEALTH_CODE_YELLOW"])


@pytest.mark.parametrize(
    ("baseline", "rules", "expected"),
    [
        pytest.param(0, {}, 10, id="no baseline: the minimum"),
        pytest.param(36, {}, 18, id="3 x 36 per hour over 10 minutes"),
        pytest.param(37, {}, 19, id="rounded up"),
        pytest.param(36, {"gate_anomaly_factor": 5.0}, 30, id="factor from the rules"),
        pytest.param(6, {"gate_anomaly_min_refusals": 4}, 4, id="minimum from the rules"),
    ],
)
def test_anomaly_threshold(baseline: int, rules: dict[str, Any], expected: int) -> None:
    assert anomaly_threshold(baseline, CommunityRules(**rules)) == expected


@pytest.mark.parametrize("order", ["in order", "reversed", "one batch"])
def test_gate_anomaly_same_alert_in_any_order(order: str) -> None:
    items = refusals(12, 0, 20 * S)
    end = [tick_clock(30 * MIN)]
    reference = run(engine(), one_by_one(items + end))
    batches = {
        "in order": one_by_one(items + end),
        "reversed": [[i] for i in reversed(items)] + [end],
        "one batch": [items, end],
    }[order]
    got = run(engine(), batches)
    assert [(a["alert_id"], a["details"]) for a in got] == [
        (a["alert_id"], a["details"]) for a in reference
    ]
    assert len(got) == 1


# ------------------------------------------------------------------ pure helpers, memory
@pytest.mark.parametrize(
    ("subject_type", "direction", "action", "repeat", "expected"),
    [
        pytest.param("RESIDENT", "IN", "ALLOW", False, 1, id="in"),
        pytest.param("VISITOR", "OUT", "WARN", False, -1, id="out with a warning"),
        pytest.param("RESIDENT", "IN", "RECHECK", False, 1, id="held for a recheck is at the gate"),
        pytest.param("RESIDENT", "IN", "DENY", False, 0, id="refused"),
        pytest.param("VEHICLE", "IN", "ALLOW", False, 0, id="vehicle"),
        pytest.param("RESIDENT", "IN", "ALLOW", True, 0, id="re-scan"),
    ],
)
def test_occupancy_delta(
    subject_type: str, direction: str, action: str, repeat: bool, expected: int
) -> None:
    assert occupancy_delta(subject_type, direction, action, repeat) == expected


def test_memory_of_a_community_that_goes_quiet_is_bounded_by_its_windows() -> None:
    e = engine(PEOPLE, capacity_persons=100)
    items = [report(f"r{i}", i * MIN, f"res-{i:02d}") for i in range(3)]
    items += [*refusals(12, 0, 20 * S), scan("in", MIN, "res-00")]
    run(e, one_by_one([*items, tick_clock(10 * MIN)]))
    sizes = e.state_sizes()
    assert sizes["cluster_keys"] == 1 and sizes["gate_rate_keys"] == 1
    assert sizes["occupancy_sites"] == 1
    # the community's time passes the windows (72 h; 10 min + 1 h): swept
    run(e, [[tick_clock(73 * H)]])
    e.sweep()
    sizes = e.state_sizes()
    assert sizes["cluster_keys"] == 0 and sizes["gate_rate_keys"] == 0
    assert sizes["occupancy_sites"] == 1  # one count per site, carried: "people inside"
    # a community that goes silent: the wall-clock tick decides its pending windows
    e2 = engine(PEOPLE)
    run(e2, [[report(f"q{i}", i * MIN, f"res-{i:02d}") for i in range(3)]])
    pending = e2.windows.clusters.store.get(f"{CID}|BUILDING|12")
    assert pending is not None and len(pending["p"]) == 3
    out = e2.tick(T0 + 10 * MIN + LATENESS)
    assert [a["alert_type"] for a in out.alerts if a["alert_type"] in EW_TYPES] == [
        "CLUSTER_SUSPECTED"
    ]


def test_state_survives_a_restore_from_the_changelog() -> None:
    items = [report(f"r{i}", i * MIN, f"res-{i:02d}") for i in range(2)] + refusals(6, 0, 20 * S)
    items += [scan("in1", 0, "res-00"), scan("in2", 10 * S, "res-01")]
    first = engine(PEOPLE, capacity_persons=2)
    run(first, [items])
    changes = first.take_changes()
    second = engine(PEOPLE, capacity_persons=2)
    for store, key, raw in changes:
        second.restore(store, key, raw)
    more = [report("r2", 3 * MIN, "res-02"), *refusals(6, 2 * MIN, 20 * S, tag="z")]
    more += [scan("in3", 3 * MIN, "res-02"), tick_clock(30 * MIN)]
    reference = engine(PEOPLE, capacity_persons=2)
    expected = run(reference, [items, more])
    got = run(second, [more])
    assert [(a["alert_id"], a["details"]) for a in got] == [
        (a["alert_id"], a["details"]) for a in expected
    ]
    assert sorted(a["alert_type"] for a in got) == sorted(EW_TYPES)


@pytest.mark.parametrize(
    ("margin_s", "left"),
    [
        pytest.param(6 * 3600, (0, 0), id="forgotten on the wall clock (silence margin 6 h)"),
        # the tick closes a quiet community's gate minutes on the wall clock (and drops them
        # once past window + baseline); its cases stay for the window of its event time
        pytest.param(None, (1, 0), id="control: event time only keeps the cases"),
    ],
)
def test_a_silent_community_forgets_its_windows_on_the_wall_clock(
    margin_s: int | None, left: tuple[int, int]
) -> None:
    e = RuleEngine(allowed_lateness_s=LATENESS // S, silence_margin_s=margin_s)
    for r in PEOPLE:
        e.upsert_resident(r)
    e.upsert_rules({"community_id": CID, "capacity_persons": 100})
    items = [report(f"r{i}", i * MIN, f"res-{i:02d}") for i in range(3)]
    items += [*refusals(12, 0, 20 * S), scan("in", MIN, "res-00")]
    run(e, one_by_one([*items, scan("later", 10 * MIN, "res-01")]))
    now = T0 + 20 * MIN
    while now <= T0 + 8 * 24 * H:  # eight silent days, a tick every hour
        e.tick(now)
        now += H
    sizes = e.state_sizes()
    assert (sizes["cluster_keys"], sizes["gate_rate_keys"]) == left
    assert sizes["occupancy_sites"] == 1  # the count is what must be carried (two inside)
    assert e.windows.occupancy.inside(CID) == 2
