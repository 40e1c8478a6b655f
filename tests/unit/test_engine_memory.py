"""Memory of every store is bounded when a community goes silent (issue 20, behaviour 1).

Forgetting used to run on the community's event time only: 3,000 one-off devices (phones
scanning once each) and then eight days without an event from the community left 3,000
device-health entries — and every other store as it was. The engine's ``tick`` now also
forgets by the wall clock: a community whose time has not moved for longer than
``silence_margin_s`` is forgotten as if its time had kept running since, less the margin
(``RuleEngine.forgetting_times``; docs/rules.md, "Memory"). ``silence_margin_s=None`` is the old
engine (event time only): the control.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from streams.engine import READING, REPORT, SCAN, Item, Output, RuleEngine
from streams.rules.timeutil import clock_for
from tests.unit.community_day import LATENESS_MS, community_day, reference_order

CID = "91350100M000100Y43"
#: a community with no gates: only its residents' health reports arrive (no event time)
APP_CID = "91350100M000200Y43"
T0 = 1_700_000_000_000  # 2023-11-15 06:13:20 Asia/Shanghai
S = 1000
MIN = 60 * S
H = 60 * MIN
DAY = 24 * H
DEVICES = 3_000
TODAY = clock_for("Asia/Shanghai").local_day(T0)
OBSERVED = "resobs0000000000000000a"
OBSERVED_NO_START = "resobs0000000000000000b"
APP_RESIDENT = "resapp0000000000000000c"
PASS = "pass00000000000000000001"


def _residents() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "resident_id": f"res{i:04d}0000000000000000",
            "community_id": CID,
            "household_id": f"hh{i // 3:03d}",
            "status": "NORMAL",
            "observation_start": None,
            "key_groups": [],
            "face_consent": False,
            "updated_at": 0,
        }
        for i in range(61)
    ]
    for rid, cid, start in (
        (OBSERVED, CID, TODAY),
        (OBSERVED_NO_START, CID, None),
        (APP_RESIDENT, APP_CID, TODAY),
    ):
        out.append(
            {
                "resident_id": rid,
                "community_id": cid,
                "household_id": None,
                "status": "HOME_OBSERVATION",
                "observation_start": start,
                "key_groups": [],
                "face_consent": False,
                "updated_at": 0,
            }
        )
    return out


def make_engine(silence_margin_s: int | None = 6 * 3_600) -> RuleEngine:
    e = RuleEngine(allowed_lateness_s=LATENESS_MS // S, silence_margin_s=silence_margin_s)
    for r in _residents():
        e.upsert_resident(r)
    e.upsert_pass(
        {
            "pass_id": PASS,
            "community_id": CID,
            "host_resident_id": "res00000000000000000000",
            "valid_from": T0 - H,
            "valid_until": T0 + DAY,
            "max_entries": 100,
            "revoked": False,
        }
    )
    e.upsert_rules(
        {"community_id": CID, "entry_limit_scope": "HOUSEHOLD", "entry_limit_direction": "OUT"}
    )
    return e


def _scan(n: int, t: int, device: str, subject_type: str, subject: str, **kw: Any) -> Item:
    ev: dict[str, Any] = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"scan-{n}")),
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": device,
        "direction": "OUT" if n % 2 else "IN",
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": None,
        "method": "QR",
        "health_code": "RED" if n % 50 == 0 else "GREEN",
        "face_consent": False,
        "temperature_c": None,
        "event_time": t,
    }
    ev.update(kw)
    return (SCAN, ev, t)


def _reading(n: int, t: int, device: str, temp: float, subject: str | None) -> Item:
    ev = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"reading-{n}")),
        "community_id": CID,
        "gate_id": "G-01",
        "device_id": device,
        "subject_id": subject,
        "temperature_c": temp,
        "ambient_c": None,
        "sensor": "INFRARED_GATE",
        "event_time": t,
    }
    return (READING, ev, t)


def _report(n: int, t: int, cid: str, rid: str, symptoms: list[str]) -> Item:
    ev = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"report-{n}")),
        "community_id": cid,
        "resident_id": rid,
        "report_date": TODAY,
        "temperature_c": 36.6,
        "symptoms": symptoms,
        "event_time": t,
    }
    return (REPORT, ev, t)


END = T0 + DEVICES * 1_200


def busy_hour() -> list[Item]:
    """An hour of one community that fills every store: 3,000 phones scanning the community's
    code once each (residents of 20 households under a household limit: quotas, dedupe, RED
    codes and refused exits for the suppression store), then at the gate a household's exit, a
    visitor, and the infrared thermometer (drift samples, a fever recheck nobody comes back
    for); health reports (with symptoms) from two residents under home observation, one of
    them without a start day, and from a community that has no gates at all."""
    items: list[Item] = []
    for n in range(DEVICES):
        t = T0 + n * 1_200  # one every 1.2 s: the hour
        items.append(_scan(n, t, f"phone-{n:04d}", "RESIDENT", f"res{n % 60:04d}0000000000000000"))
    items.append(
        _scan(
            DEVICES + 1,
            END - 10 * S,
            "D-01",
            "RESIDENT",
            "res00600000000000000000",
            direction="OUT",
        )
    )
    items.append(
        _scan(
            DEVICES + 2, END - 30 * S, "D-01", "VISITOR", PASS, direction="IN", health_code="GREEN"
        )
    )
    for k in range(12):
        items.append(_reading(k, T0 + k * 5 * MIN, "D-01", 36.4 + (k % 3) / 10, None))
    items.append(_reading(99, END - 2 * MIN, "D-01", 38.4, "res00010000000000000000"))
    items.append(_report(0, T0 + 20 * MIN, CID, OBSERVED, ["COUGH"]))
    items.append(_report(1, T0 + 21 * MIN, CID, OBSERVED_NO_START, []))
    items.append(_report(2, T0 + 22 * MIN, APP_CID, APP_RESIDENT, ["FEVER"]))
    items.sort(key=reference_order)
    return items


def silence(e: RuleEngine, days: float, step_ms: int = H, start: int = END + MIN) -> Output:
    """Ticks of the wall clock, every ``step_ms``, for ``days`` after the busy hour."""
    out = Output()
    now = start
    while now <= END + int(days * DAY):
        tick = e.tick(now)
        out.alerts += tick.alerts
        now += step_ms
    return out


def sizes(e: RuleEngine) -> dict[str, int]:
    return {s.name: len(s) for s in e.stores()}


def clock_sources(e: RuleEngine) -> int:
    value = e.clock.store.get(CID)
    assert value is not None
    return len(value.sources) + len(value.unverified)


# What bounds each store when its community goes silent: entries left after eight days of
# wall clock (ticks every hour) with the bound, and at least how many the control (event time
# only) keeps after the same ticks — what the wall clock made the difference for.
# (store, left with the bound, kept without it, what bounds it)
STORE_CASES = [
    ("devices", 0, DEVICES + 1, "forgotten device_forget_s (7 d) after its last event"),
    ("clock", 1, 1, "one record per community: its time and its two most advanced sources"),
    ("replay", 1, 2, "event time - 2 x lateness - 1 h (the key left is the chunk counter)"),
    ("quota", 0, 1, "the longest configurable entry-limit window (7 d) + lateness"),
    ("dedupe", 0, 1, "dedupe window + lateness"),
    ("suppress", 0, 1, "2 x suppression window + lateness; a gateless community: wall clock"),
    ("fever", 0, 1, "recheck window + lateness, once the open recheck is closed MISSED"),
    ("pass_entries", 0, 1, "the pass's validity + lateness (or the pass leaving the register)"),
    ("observation", 3, 3, "the register: residents under observation, their period's days"),
]


@pytest.fixture(scope="module")
def after_silence() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Store sizes after the busy hour, then after eight silent days with and without the
    wall-clock bound."""
    bounded, control = make_engine(), make_engine(silence_margin_s=None)
    busy: dict[str, int] = {}
    for e in (bounded, control):
        e.on_events(busy_hour())
        busy = sizes(e)
        silence(e, 8)
    return busy, sizes(bounded), sizes(control)


@pytest.mark.parametrize(
    ("store", "silent", "control", "bound"),
    [pytest.param(*case, id=case[0]) for case in STORE_CASES],
)
def test_every_store_is_bounded_when_its_community_goes_silent(
    after_silence: tuple[dict[str, int], dict[str, int], dict[str, int]],
    store: str,
    silent: int,
    control: int,
    bound: str,
) -> None:
    busy, bounded, old = after_silence
    assert busy[store] >= control > 0, "the busy hour does not exercise the store"
    assert bounded[store] <= silent, bound
    assert old[store] >= control


def test_the_table_answers_for_every_store() -> None:
    """A store not in ``STORE_CASES`` (added since) must be forgotten too: after the silence it
    may keep a few keys per community (a site's count), never one per event, subject or
    device."""
    e = make_engine()
    e.on_events(busy_hour())
    silence(e, 8)
    named = {case[0] for case in STORE_CASES}
    for name, size in sizes(e).items():
        if name not in named:
            assert size <= 4 * 2, f"store {name} keeps {size} keys of a silent community"


def test_issue_scenario_3000_one_off_devices_then_eight_silent_days() -> None:
    e = make_engine()
    e.on_events(busy_hour())
    assert e.state_sizes()["devices"] == DEVICES + 1
    assert clock_sources(e) == DEVICES + 1
    silence(e, 8)
    assert e.state_sizes()["devices"] == 0
    assert clock_sources(e) <= 2  # the community's time is kept, from its leading source

    control = make_engine(silence_margin_s=None)
    control.on_events(busy_hour())
    silence(control, 8)
    assert control.state_sizes()["devices"] == DEVICES + 1
    assert clock_sources(control) == DEVICES + 1


@pytest.mark.parametrize(
    ("days", "devices"),
    [
        pytest.param(0.2, DEVICES + 1, id="silent 5 h (< margin): nothing forgotten"),
        pytest.param(3, DEVICES + 1, id="silent 3 d: devices kept (forget after 7 d)"),
        pytest.param(7, DEVICES + 1, id="silent 7 d: 7 d - margin of running time, kept"),
        pytest.param(7.3, 0, id="silent 7 d + margin: forgotten"),
    ],
)
def test_devices_are_forgotten_seven_days_plus_the_margin_after_the_silence(
    days: float, devices: int
) -> None:
    e = make_engine()
    e.on_events(busy_hour())
    silence(e, days)
    assert e.state_sizes()["devices"] == devices


def _apply(changelog: dict[tuple[str, str], bytes], changes: list[Any]) -> None:
    for store, key, raw in changes:
        if raw is None:
            changelog.pop((store, key), None)
        else:
            changelog[(store, key)] = raw


def test_forgotten_keys_are_tombstoned_so_a_restore_does_not_bring_them_back() -> None:
    e = make_engine()
    changelog: dict[tuple[str, str], bytes] = {}
    e.on_events(busy_hour())
    _apply(changelog, e.take_changes())
    before = len(changelog)
    silence(e, 8)
    changes = e.take_changes()
    tombstones = {(s, k) for s, k, raw in changes if raw is None}
    assert sum(1 for s, _ in tombstones if s == "devices") == DEVICES + 1
    _apply(changelog, changes)
    assert len(changelog) < before // 100

    restored = make_engine()
    for (store, key), raw in changelog.items():
        restored.restore(store, key, raw)
    assert sizes(restored) == sizes(e)
    for a, b in zip(e.stores(), restored.stores(), strict=True):
        assert a.snapshot() == b.snapshot(), f"store {a.name} differs after the restore"


def test_a_restored_task_counts_the_silence_from_its_first_tick() -> None:
    """The silence is measured in memory: a task restored mid-silence forgets later (its
    first tick starts the count), never earlier."""
    e = make_engine()
    changelog: dict[tuple[str, str], bytes] = {}
    e.on_events(busy_hour())
    silence(e, 4)
    _apply(changelog, e.take_changes())
    restored = make_engine()
    for (store, key), raw in changelog.items():
        restored.restore(store, key, raw)
    silence(restored, 8, start=END + 4 * DAY + H)  # 4 more days: 7 d + margin not reached
    assert restored.state_sizes()["devices"] == DEVICES + 1
    silence(restored, 11.4, start=END + 8 * DAY + H)
    assert restored.state_sizes()["devices"] == 0


def test_observation_without_a_start_keeps_two_days_and_ends_with_the_register() -> None:
    e = make_engine()
    e.on_events(busy_hour())
    log = e.observation.store.get(CID + "|" + OBSERVED_NO_START)
    assert log is not None and log.reported == {TODAY}
    silence(e, 8)
    log = e.observation.store.get(CID + "|" + OBSERVED_NO_START)
    assert log is not None
    assert len(log.overdue_alerted) <= 2 and not log.reported  # REPORT_OVERDUE every day
    for rid in (OBSERVED, OBSERVED_NO_START, APP_RESIDENT):
        e.delete_resident(rid)
    e.sweep(END + 8 * DAY + 2 * H)
    assert len(e.observation.store) == 0


# ---------------------------------------------------------------- decisions do not change


def _later(items: list[Item], shift_ms: int) -> list[Item]:
    """The same day ``shift_ms`` later, as new events (new ids, same subjects and devices)."""
    out: list[Item] = []
    for kind, ev, ts in items:
        moved = dict(ev)
        moved["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ev['event_id']}+{shift_ms}"))
        moved["event_time"] = ev["event_time"] + shift_ms
        out.append((kind, moved, None if ts is None else ts + shift_ms))
    return out


def _run_with_silence(
    margin_s: int | None, seed: int, gap_ms: int
) -> tuple[list[Any], set[str], int]:
    """A generated day of two communities, hourly ticks through ``gap_ms`` of silence, then
    the same day again: (its decisions, every alert id, entries held before it resumed)."""
    day = community_day(seed, communities=2, scans=120)
    e = day.engine(silence_margin_s=margin_s)
    first = day.items
    e.on_events(first)
    end = max(ev["event_time"] for _, ev, _ in first)
    alerts: set[str] = set()
    now = end + MIN
    while now < end + gap_ms - 3 * H:
        alerts.update(a["alert_id"] for a in e.tick(now).alerts)
        now += H
    held = sum(sizes(e).values())
    second = _later(first, gap_ms)
    out = e.on_events(sorted(second, key=e.sort_key))
    alerts.update(a["alert_id"] for a in out.alerts)
    return out.decisions, alerts, held


@pytest.mark.parametrize(
    "gap_ms",
    [
        pytest.param(4 * H, id="next day 4 h later: silent less than the margin"),
        pytest.param(30 * H, id="30 h later: quota window (48 h) spans the silence"),
        pytest.param(60 * H, id="60 h later"),
        pytest.param(5 * DAY, id="5 days later"),
    ],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_community_that_resumes_gets_the_decisions_of_the_engine_without_the_bound(
    seed: int, gap_ms: int
) -> None:
    """Forgetting by the wall clock forgets what event time would have forgotten at the
    community's running time less the margin: nothing an event after the silence needs."""
    with_bound = _run_with_silence(6 * 3_600, seed, gap_ms)
    without = _run_with_silence(None, seed, gap_ms)
    assert with_bound[0] == without[0]
    assert with_bound[1] == without[1]
    assert any(d["decision"] != "ALLOW" for d in with_bound[0])
    if gap_ms > 9 * H:  # silent for longer than the margin: the bound did forget
        assert with_bound[2] < without[2]


def test_the_margin_is_at_least_the_allowed_lateness() -> None:
    e = RuleEngine(allowed_lateness_s=8 * 3_600, silence_margin_s=3_600)
    e.on_events(busy_hour())
    silence(e, 7.3)  # forgotten at 7 d + 6 h with the default margin; here 7 d + 8 h
    assert e.state_sizes()["devices"] == DEVICES + 1
    silence(e, 7.4, start=END + int(7.3 * DAY) + H)
    assert e.state_sizes()["devices"] == 0
