"""Regression tests of issue 9's defects, each driven like the issue found it: the processor over
the real codec (or the engine's batch calls), with the scenario of the report. Each fails on the
engine before the issue (see the closing note) and passes now.

Only interfaces the old engine had too are used (``EventProcessor.process``/``warm_up``,
``RuleEngine.on_scans``/``on_readings``/``on_reports``/``tick``), so the same file runs against
the old code as the control.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from streams.engine import RuleEngine
from streams.processor import EventProcessor, dead_letter
from streams.rules.timeutil import clock_for

CID = "91350100M000100Y43"
T0 = 1_700_000_000_000  # 2023-11-15 06:13:20 Asia/Shanghai
S = 1000
MIN = 60 * S
H = 60 * MIN
SETTINGS = Settings()
TOPICS = SETTINGS.topics
CODEC = Codec()
MOTHER = "9802b052e8bab1441a0f299ab1dac951"
SON = "9802b052e8bab1441a0f299ab1dac952"
HOUSEHOLD = "df1d9da46f9e44a49e90b709b7aea7fe"
OBSERVED = "c0129a60d9c5ff48582958298ce18edc"


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def _id() -> str:
    return str(uuid.uuid4())


def scan(t: int, subject: str = MOTHER, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": _id(),
        "community_id": CID,
        "gate_id": "east-gate",
        "device_id": "qr-east-01",
        "direction": "IN",
        "subject_type": "RESIDENT",
        "subject_id": subject,
        "household_id": HOUSEHOLD,
        "method": "QR",
        "health_code": "GREEN",
        "face_consent": False,
        "temperature_c": None,
        "event_time": t,
    }
    ev.update(fields)
    return ev


def reading(t: int, temp: float, subject: str | None = MOTHER, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": _id(),
        "community_id": CID,
        "gate_id": "east-gate",
        "device_id": "ir-east-01",
        "subject_id": subject,
        "temperature_c": temp,
        "ambient_c": None,
        "sensor": "INFRARED_GATE",
        "event_time": t,
    }
    ev.update(fields)
    return ev


def report(t: int, day: int) -> dict[str, Any]:
    return {
        "event_id": _id(),
        "community_id": CID,
        "resident_id": OBSERVED,
        "report_date": day,
        "temperature_c": 36.5,
        "symptoms": [],
        "event_time": t,
    }


_RECORD = {
    TOPICS.gate_scans: "GateScan",
    TOPICS.temperature_readings: "TemperatureReading",
    TOPICS.health_reports: "HealthReport",
}
_offsets: dict[str, int] = {}


def msg(ev: dict[str, Any], kafka_ts: int | None = None) -> Msg:
    """The Kafka message of an event; its timestamp is the true time unless given."""
    topic = (
        TOPICS.gate_scans
        if "direction" in ev
        else TOPICS.health_reports
        if "resident_id" in ev
        else TOPICS.temperature_readings
    )
    offset = _offsets[topic] = _offsets.get(topic, -1) + 1
    ts = ev["event_time"] if kafka_ts is None else kafka_ts
    return Msg(topic, 0, offset, b"k", CODEC.encode(_RECORD[topic], ev), ts)


def engine(**rules: Any) -> RuleEngine:
    e = RuleEngine(allowed_lateness_s=300)
    day = clock_for("Asia/Shanghai").local_day(T0)
    for rid, status in ((MOTHER, "NORMAL"), (SON, "NORMAL"), (OBSERVED, "HOME_OBSERVATION")):
        e.upsert_resident(
            {
                "resident_id": rid,
                "community_id": CID,
                "household_id": HOUSEHOLD if rid != OBSERVED else "hh-observed",
                "status": status,
                "observation_start": day if status == "HOME_OBSERVATION" else None,
                "key_groups": [],
                "face_consent": False,
                "updated_at": 0,
            }
        )
    e.upsert_rules(
        {
            "community_id": CID,
            "entry_limit_scope": "HOUSEHOLD",
            "entry_limit_count": 1,
            "entry_limit_direction": "OUT",
            "entry_limit_action": "DENY",
            **rules,
        }
    )
    return e


def processor(e: RuleEngine) -> EventProcessor:
    return EventProcessor(SETTINGS, CODEC, e, Metrics.create())


Run = tuple[dict[str, tuple[str, list[str]]], list[dict[str, Any]]]


def run(p: EventProcessor, polls: Sequence[Sequence[Msg]]) -> Run:
    """Decisions by event id and every alert, over the polls."""
    decisions: dict[str, tuple[str, list[str]]] = {}
    alerts: list[dict[str, Any]] = []
    for poll in polls:
        result = p.process(list(poll))
        for d in result.rows.get("gate_decisions", []):
            decisions[d["event_id"]] = (d["decision"], d["reasons"])
        alerts += result.rows.get("alerts", [])
    return decisions, alerts


def types(alerts: list[dict[str, Any]], subject: str | None = None) -> list[str]:
    return sorted(a["alert_type"] for a in alerts if subject is None or a["subject_id"] == subject)


# ---------------------------------------------------------------- defect 1


def test_defect1_readings_behind_scans_in_one_poll_keep_their_fever_alerts() -> None:
    """18 scans over 20 min and, in the same poll, gate readings of two people a few minutes
    older than the newest scan: the rechecks are decided."""
    scans = [scan(T0 + i * 70 * S, SON, direction="IN") for i in range(18)]
    readings = [
        reading(T0 + 4 * MIN, 37.3, MOTHER),
        reading(T0 + 6 * MIN, 37.6, MOTHER),
        reading(T0 + 8 * MIN, 37.4, SON),
        reading(T0 + 10 * MIN, 36.7, SON),
    ]
    _, alerts = run(processor(engine()), [[msg(e) for e in [*scans, *readings]]])
    assert types(alerts, MOTHER) == ["FEVER_CONFIRMED", "FEVER_RECHECK"]
    assert types(alerts, SON) == ["FEVER_CLEARED", "FEVER_RECHECK"]


# ---------------------------------------------------------------- defect 2


@pytest.mark.parametrize(
    ("bad_time", "kafka_ts"),
    [
        pytest.param(T0 + 8 * H, T0, id="device clock 8 h ahead (time-zone bug)"),
        pytest.param(4_070_000_000_000, T0, id="a 2098 date the codec accepts"),
        pytest.param(T0 + 5 * MIN + 390 * S, T0 + 5 * MIN, id="a scanner 6.5 min fast"),
        pytest.param(T0 + 8 * H, -1, id="8 h ahead without a Kafka timestamp: the median"),
    ],
)
def test_defect2_one_bad_clock_does_not_poison_its_community(bad_time: int, kafka_ts: int) -> None:
    e = engine()
    p = processor(e)
    warm = [
        scan(T0 - 2 * MIN, SON, device_id="qr-west-01", gate_id="west-gate"),
        scan(T0 - MIN, SON, device_id="qr-north-01", gate_id="north-gate"),
    ]
    bad = scan(bad_time, SON, device_id="qr-fast-01", gate_id="south-gate")
    _, skew_alerts = run(p, [[msg(ev) for ev in warm], [msg(bad, kafka_ts)]])
    later = [
        scan(T0 + 2 * MIN, MOTHER, direction="OUT"),
        reading(T0 + 3 * MIN, 37.8, MOTHER),
        reading(T0 + 4 * MIN, 38.0, MOTHER),
        scan(T0 + 5 * MIN, SON, direction="OUT", device_id="qr-west-01", gate_id="west-gate"),
    ]
    decisions, alerts = run(p, [[msg(ev)] for ev in later])
    assert decisions[later[3]["event_id"]] == ("DENY", ["ENTRY_LIMIT_EXCEEDED"])
    assert types(alerts, MOTHER) == ["FEVER_CONFIRMED", "FEVER_RECHECK"]
    assert e.stats["late_events"] == 0
    if kafka_ts > 0:  # judged against the Kafka timestamp: clamped and reported
        assert "DEVICE_CLOCK_SKEW" in types(skew_alerts)


# ---------------------------------------------------------------- defect 3


def test_defect3_a_restart_rebuild_in_mixed_chunks_keeps_every_exit() -> None:
    """The rebuild replays chunks in any order; an exit 10 h ago is counted even if a chunk
    with newer events came first."""
    now = T0 + 10 * H
    e = engine()
    p = processor(e)
    p.warm_up([msg(scan(now - H, SON, direction="IN"))])
    p.warm_up([msg(scan(now - 10 * H, MOTHER, direction="OUT"))])
    son_out = scan(now, SON, direction="OUT")
    decisions, _ = run(p, [[msg(son_out)]])
    assert decisions[son_out["event_id"]] == ("DENY", ["ENTRY_LIMIT_EXCEEDED"])


# ---------------------------------------------------------------- defect 4


def test_defect4_out_of_order_within_lateness_cannot_bypass_the_quota() -> None:
    e = engine()
    later = scan(T0 + MIN, SON, direction="OUT")
    earlier = scan(T0, MOTHER, direction="OUT")
    a = e.on_scans([later]).decisions[0]
    b = e.on_scans([earlier]).decisions[0]
    assert sorted(d["decision"] for d in (a, b)) == ["ALLOW", "DENY"]
    assert b["reasons"] == ["ENTRY_LIMIT_EXCEEDED"]


# ---------------------------------------------------------------- defect 5


@pytest.mark.parametrize(
    "reading_first",
    [pytest.param(False, id="scan, then its gate reading"), pytest.param(True, id="reading first")],
)
def test_defect5_one_measurement_on_scan_and_reading_is_one_recheck(reading_first: bool) -> None:
    """A gate puts temperature_c on the scan and also publishes the reading of that instant;
    a handheld recheck 2 min later settles it: no FEVER_RECHECK_MISSED for a rechecked person."""
    the_scan = scan(T0, MOTHER, temperature_c=37.8, device_id="ir-east-01")
    the_reading = reading(T0, 37.8, MOTHER)
    recheck = reading(
        T0 + 2 * MIN, 36.5, MOTHER, device_id="gun-east-03", sensor="INFRARED_HANDHELD"
    )
    after = [scan(T0 + i * MIN, SON) for i in range(3, 16)]  # event time moves on
    first = [the_reading, the_scan] if reading_first else [the_scan, the_reading]
    decisions, alerts = run(
        processor(engine()),
        [[msg(first[0])], [msg(first[1])], [msg(recheck)]] + [[msg(ev)] for ev in after],
    )
    assert types(alerts, MOTHER) == ["FEVER_CLEARED", "FEVER_RECHECK"]
    assert decisions[the_scan["event_id"]] == ("RECHECK", ["FEVER_RECHECK"])


# ---------------------------------------------------------------- defect 6


@pytest.mark.parametrize(
    "kafka_ts",
    [
        pytest.param(-1, id="Kafka timestamp -1"),
        pytest.param(0, id="1970"),
        pytest.param(4_200_000_000_000, id="after 2100"),
    ],
)
def test_defect6_a_dead_letter_can_always_be_built(kafka_ts: int) -> None:
    good = scan(T0, MOTHER)
    bad = Msg(TOPICS.gate_scans, 0, 99, b"k", b"\x00garbage", kafka_ts)
    result = processor(engine()).process([msg(good), bad])
    assert [d["event_id"] for d in result.rows["gate_decisions"]] == [good["event_id"]]
    (letter,) = result.rows["dead_letters"]
    CODEC.encode("DeadLetter", letter)  # valid for the contract
    assert letter["source_offset"] == 99 and str(kafka_ts) in letter["detail"]
    again = dead_letter(bad, InvalidEvent("bad_marker", "x"))
    CODEC.encode("DeadLetter", again)


# ---------------------------------------------------------------- defect 7


def test_defect7_observation_is_completed_only_after_its_days_have_passed() -> None:
    clock = clock_for("Asia/Shanghai")
    day0 = clock.local_day(T0)
    at = clock.to_epoch_ms(day0, 8 * 60)
    e = engine()
    out = e.on_reports([report(at + i * S, day0 + i) for i in range(14)])
    alerts = out.alerts + e.tick(clock.to_epoch_ms(day0, 23 * 60)).alerts
    assert "OBSERVATION_COMPLETED" not in types(alerts)


def test_defect7_control_fourteen_days_reported_on_their_days_complete() -> None:
    clock = clock_for("Asia/Shanghai")
    day0 = clock.local_day(T0)
    e = engine()
    alerts: list[dict[str, Any]] = []
    for i in range(14):
        alerts += e.on_reports([report(clock.to_epoch_ms(day0 + i, 8 * 60), day0 + i)]).alerts
    alerts += e.tick(clock.to_epoch_ms(day0 + 14, 8 * 60)).alerts
    assert types(alerts, OBSERVED) == ["OBSERVATION_COMPLETED"]


# ---------------------------------------------------------------- defect 8


def _community_day(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One community's hour: scans (some with a fever and the gate's reading of the instant),
    handheld rechecks; returns the events in event-time order and the residents."""
    rng = random.Random(seed)
    residents = [f"{i:032x}" for i in range(1, 25)]
    events: list[dict[str, Any]] = []
    t = T0
    for n in range(240):
        t += rng.randrange(5 * S, 25 * S)
        subject = residents[n % len(residents)]
        gate = rng.choice(["east", "west"])
        temp = round(37.3 + rng.random(), 1) if rng.random() < 0.2 else 36.4
        s = scan(
            t,
            subject,
            gate_id=f"{gate}-gate",
            device_id=f"ir-{gate}-01",
            household_id=None,
            temperature_c=temp,
            health_code="RED" if rng.random() < 0.05 else "GREEN",
        )
        events.append(s)
        events.append(reading(t, temp, subject, gate_id=f"{gate}-gate", device_id=f"ir-{gate}-01"))
        if temp >= 37.3 and rng.random() < 0.8:
            events.append(
                reading(
                    t + rng.randrange(MIN, 3 * MIN),
                    36.6,
                    subject,
                    gate_id=f"{gate}-gate",
                    device_id=f"gun-{gate}-01",
                    sensor="INFRARED_HANDHELD",
                )
            )
    events.sort(key=lambda ev: ev["event_time"])
    return events, [
        {
            "resident_id": r,
            "community_id": CID,
            "household_id": None,
            "status": "NORMAL",
            "observation_start": None,
            "key_groups": [],
            "face_consent": False,
            "updated_at": 0,
        }
        for r in residents
    ]


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed {s}") for s in (1, 2, 3)])
def test_defect8_identical_input_in_other_polls_gives_identical_alerts(seed: int) -> None:
    """The same messages, arriving a little out of order (within the lateness) and cut into
    polls differently, as two runs over the same topics would: the same alert ids and the same
    decisions."""
    events, residents = _community_day(seed)
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda ev: ev["event_time"] + rng.randrange(0, 150 * S))
    messages = [msg(ev) for ev in arrived]
    results = []
    for cut in (1, 37, 500):
        e = engine(entry_limit_scope="NONE")
        for r in residents:
            e.upsert_resident(r)
        polls = [messages[i : i + cut] for i in range(0, len(messages), cut)]
        decisions, alerts = run(processor(e), polls)
        results.append((decisions, sorted(a["alert_id"] for a in alerts)))
    assert results[0][1] == results[1][1] == results[2][1]
    assert results[0][0] == results[1][0] == results[2][0]
