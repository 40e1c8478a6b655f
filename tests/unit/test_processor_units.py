"""The worker's pure pieces: dead-letter records, the dead-letter budget, isolating the rows
ClickHouse rejects, and a batch run through the processor without Kafka."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from sinks import SinkDataError
from streams.engine import RuleEngine
from streams.processor import DeadLetterBudget, DeadLetterLimitExceeded, EventProcessor, dead_letter
from streams.stages.sink import write_isolating_bad_rows
from tests.integration.pipeline_harness import fresh_example


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_700_000_000_000


def test_dead_letter_id_is_its_position_so_redelivery_repeats_it() -> None:
    err = InvalidEvent("bad_marker", "payload starts with 6761")
    a = dead_letter(Msg("gate.scans", 2, 41, b"k", b"garbage"), err)
    b = dead_letter(Msg("gate.scans", 2, 41, b"k", b"garbage"), err)
    c = dead_letter(Msg("gate.scans", 2, 42, b"k", b"garbage"), err)
    assert a == b
    assert a["dead_letter_id"] != c["dead_letter_id"]
    assert (a["reason"], a["source_offset"], a["original"]) == ("bad_marker", 41, b"garbage")


@pytest.mark.parametrize(
    ("batches", "stops"),
    [
        pytest.param([(1000, 10)], False, id="1% bad is dead-lettered and the worker goes on"),
        pytest.param([(1000, 600)], True, id="60% bad stops loudly"),
        pytest.param([(100, 90)], False, id="too small a sample to judge"),
        pytest.param([(1000, 600), (5000, 0)], True, id="the bad batch is judged when it comes"),
        pytest.param([(5000, 0), (600, 590)], False, id="old good input still in the window"),
    ],
)
def test_dead_letter_budget(batches: list[tuple[int, int]], stops: bool) -> None:
    budget = DeadLetterBudget(max_ratio=0.5, min_sample=1000)
    stopped = False
    try:
        for total, bad in batches:
            budget.record(total, bad)
    except DeadLetterLimitExceeded:
        stopped = True
    assert stopped is stops


class PickyWriter:
    """Rejects any batch that holds a row with ``bad`` set, like a server refusing a value."""

    database = "fangxian"

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if any(r.get("bad") for r in rows):
            raise SinkDataError("Code: 53. Type mismatch in column temperature_c")
        self.written.extend(dict(r) for r in rows)
        return len(rows)


@pytest.mark.parametrize(
    "bad_positions",
    [
        pytest.param([], id="no bad row: one insert"),
        pytest.param([0], id="first row bad"),
        pytest.param([7, 8, 63], id="several bad rows among good ones"),
        pytest.param(list(range(10)), id="every row bad"),
    ],
)
def test_rejected_rows_are_isolated_and_good_rows_written(bad_positions: list[int]) -> None:
    n = 64 if bad_positions != list(range(10)) else 10
    rows = [{"i": i, "bad": i in bad_positions} for i in range(n)]
    writer = PickyWriter()
    good, rejected = write_isolating_bad_rows(writer, "temperature_readings", rows)  # type: ignore[arg-type]
    assert good == n - len(bad_positions)
    assert sorted(r["i"] for r in writer.written) == [i for i in range(n) if i not in bad_positions]
    assert sorted(r["i"] for r, _ in rejected) == bad_positions
    assert all("Type mismatch" in reason for _, reason in rejected)


def test_a_batch_yields_one_decision_per_scan_rows_and_dead_letters() -> None:
    settings = Settings()
    codec = Codec()
    processor = EventProcessor(settings, codec, RuleEngine(), Metrics.create())
    scans = [fresh_example("GateScan", "resident_qr") for _ in range(3)]
    face = fresh_example("GateScan", "face", face_consent=False)
    messages = [
        Msg(settings.topics.gate_scans, 0, i, b"k", codec.encode("GateScan", s))
        for i, s in enumerate([*scans, face])
    ] + [Msg(settings.topics.gate_scans, 0, 9, b"k", b"\x00garbage")]
    result = processor.process(messages)
    decisions = result.rows["gate_decisions"]
    assert sorted(d["event_id"] for d in decisions) == sorted(s["event_id"] for s in [*scans, face])
    assert result.dead_letters == 1 and result.rows["dead_letters"][0]["source_offset"] == 9
    stored_face = next(r for r in result.rows["gate_scans"] if r["event_id"] == face["event_id"])
    assert stored_face["subject_id"] == ""  # refused FACE scan: no face-derived identity kept
    topics = [topic for topic, _, _ in result.produce]
    assert topics.count(settings.topics.gate_decisions) == 4
    assert topics.count(settings.topics.dead_letters) == 1
