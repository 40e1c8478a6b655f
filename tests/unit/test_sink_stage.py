"""The sink stage's checkpoint order without a broker: the consumer is injected through its
factory (a unit test of one piece), the writer is a recording fake. Offsets are committed only
after the rows that hold those events are written, however often ClickHouse fails first."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, contract
from sinks import SinkUnavailable
from streams.stages.route import REDACT, SRC, SRC_OFF, SRC_TP
from streams.stages.sink import SinkStage

SETTINGS = Settings(app_id="unit", sink_flush_s=0.01, sink_batch_rows=1)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int = 0


class FakeConsumer:
    """What the sink uses of AIOKafkaConsumer; hands out ``batches`` once each."""

    def __init__(self, batches: list[dict[TopicPartition, list[Record]]], log: list[Any]) -> None:
        self.batches = batches
        self.log = log
        self.config: dict[str, Any] = {}
        self.parts: set[TopicPartition] = set()

    async def start(self) -> None:
        self.log.append("start")

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.parts = {TopicPartition(t, 0) for t in topics}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        await asyncio.sleep(0.02)
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[TopicPartition]:
        return self.parts

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", dict(offsets)))

    def pause(self, *parts: TopicPartition) -> None:
        self.log.append("pause")

    def resume(self, *parts: TopicPartition) -> None:
        self.log.append("resume")

    async def stop(self) -> None:
        self.log.append("stop")


class FlakyWriter:
    """Fails the first ``failures`` writes as ClickHouse being away, then records rows."""

    def __init__(self, failures: int, log: list[Any]) -> None:
        self.failures = failures
        self.log = log

    def write(self, table: str, rows: list[dict[str, Any]]) -> int:
        if self.failures:
            self.failures -= 1
            self.log.append(("unavailable", table))
            raise SinkUnavailable("connection refused")
        self.log.append(("write", table, [r["event_id"] for r in rows]))
        return len(rows)


def _scan_record(offset: int, *, redact: bool = False) -> tuple[Record, dict[str, Any]]:
    scan = dict(contract.named_examples("GateScan")["GateScan.face"])
    scan["event_id"] = str(uuid.uuid4())
    headers = [(SRC, SETTINGS.topics.gate_scans.encode()), (SRC_TP, b"0"), (SRC_OFF, b"7")]
    if redact:
        headers.append((REDACT, b"1"))
    value = Codec().encode("GateScan", scan)
    return Record(SETTINGS.decide_events_topic, 0, offset, b"c", value, headers), scan


async def _run(stage: SinkStage, until: Any) -> None:
    await stage.start()
    task = asyncio.create_task(stage.run())
    for _ in range(500):
        if until():
            break
        await asyncio.sleep(0.01)
    stage._stopping.set()
    await asyncio.wait_for(task, 5)
    await stage.stop()


@pytest.mark.parametrize(
    "failures",
    [
        pytest.param(0, id="ClickHouse up: write, then commit"),
        pytest.param(3, id="ClickHouse away three times: retried, commit only after the write"),
    ],
)
def test_offsets_are_committed_only_after_the_rows_are_written(failures: int) -> None:
    log: list[Any] = []
    record, scan = _scan_record(41)
    tp = TopicPartition(SETTINGS.decide_events_topic, 0)
    consumer = FakeConsumer([{tp: [record]}], log)

    def factory(**config: Any) -> FakeConsumer:
        consumer.config = config
        return consumer

    stage = SinkStage(
        SETTINGS, Codec(), FlakyWriter(failures, log), Metrics.create(), consumer_factory=factory
    )
    asyncio.run(_run(stage, lambda: any(e[0] == "commit" for e in log if isinstance(e, tuple))))

    assert consumer.config["isolation_level"] == "read_committed"
    assert consumer.config["group_id"] == "unit-sink"
    events = [e for e in log if isinstance(e, tuple)]
    write_at = events.index(("write", "gate_scans", [scan["event_id"]]))
    commit_at = next(i for i, e in enumerate(events) if e[0] == "commit")
    assert write_at < commit_at
    assert events[commit_at] == ("commit", {tp: 42})
    assert [e for e in events if e[0] == "unavailable"] == [
        ("unavailable", "gate_scans")
    ] * failures


def test_an_outage_is_said_once_zh_first_and_shown_on_a_gauge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[Any] = []
    record, _ = _scan_record(41)
    tp = TopicPartition(SETTINGS.decide_events_topic, 0)
    consumer = FakeConsumer([{tp: [record]}], log)
    metrics = Metrics.create()
    seen: list[float] = []

    class Watched(FlakyWriter):
        def write(self, table: str, rows: list[dict[str, Any]]) -> int:
            seen.append(metrics.sink_waiting_for_clickhouse._value.get())
            return super().write(table, rows)

    stage = SinkStage(
        SETTINGS, Codec(), Watched(4, log), metrics, consumer_factory=lambda **_: consumer
    )
    with caplog.at_level(logging.WARNING, logger="streams.stages.sink"):
        asyncio.run(_run(stage, lambda: any(e[0] == "commit" for e in log if isinstance(e, tuple))))
    assert seen == [0, 1, 1, 1, 1]  # raised while retrying
    assert metrics.sink_waiting_for_clickhouse._value.get() == 0  # and lowered once written
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # four failed inserts: one line, and one when it is back
    assert (
        lines[0].startswith("ClickHouse 不可用，写入阶段等待重试")
        and "ClickHouse unavailable" in lines[0]
    )
    assert lines[1].startswith("ClickHouse 已恢复")


@pytest.mark.parametrize(
    ("redact", "subject_kept"),
    [
        pytest.param(False, True, id="a face scan with consent keeps its subject"),
        pytest.param(True, False, id="redact=1: stored without the face-derived identity"),
    ],
)
def test_rows_follow_the_route_headers(redact: bool, subject_kept: bool) -> None:
    record, scan = _scan_record(0, redact=redact)
    stage = SinkStage(SETTINGS, Codec(), FlakyWriter(0, []), Metrics.create())
    rows = stage.rows_of([record])
    (row,) = rows["gate_scans"]
    assert row["event_id"] == scan["event_id"]
    assert (row["subject_id"] == scan["subject_id"]) is subject_kept


def test_every_retry_of_a_batch_sends_the_same_ingested_at() -> None:
    """A retried insert must be the very same block, or the server's insert deduplication (a
    cluster's replicated tables) cannot drop a retry whose first try had in fact landed: the
    stage stamps the batch once, before its first try, with its own clock."""
    log: list[Any] = []
    record, _ = _scan_record(41)
    tp = TopicPartition(SETTINGS.decide_events_topic, 0)
    consumer = FakeConsumer([{tp: [record]}], log)
    stamps: list[list[Any]] = []
    clock = iter(range(1_700_000_000_000, 1_700_000_000_000 + 10_000, 1000))

    class Stamps(FlakyWriter):
        def write(self, table: str, rows: list[dict[str, Any]]) -> int:
            stamps.append([r.get("ingested_at") for r in rows])
            return super().write(table, rows)

    stage = SinkStage(
        SETTINGS,
        Codec(),
        Stamps(3, log),
        Metrics.create(),
        consumer_factory=lambda **_: consumer,
        clock_ms=lambda: next(clock),
    )
    asyncio.run(_run(stage, lambda: any(e[0] == "commit" for e in log if isinstance(e, tuple))))
    assert stamps == [[1_700_000_000_000]] * 4  # three failed tries and the one that landed
