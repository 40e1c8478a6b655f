"""The ClickHouse record is exact: a crash between the insert and the offset commit (of the sink,
and of an at_least_once decide stage), and a ClickHouse outage mid-stream, lose nothing and
double nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fangxian.core.settings import Settings
from fangxian.demo import load_reference
from fangxian.ingest.produce import RecordProducer
from fangxian.sim import CommunitySimulator
from infra.clickhouse_server import ClickHouseServer
from schemas.topics import EVENT_TABLES
from sinks import open_writer
from sinks.reports.daily import Scope, build_report
from streams.stages.decide import DecideStage
from streams.stages.sink import SinkStage
from tests.integration.pipeline_harness import rows_written, run_pipeline_until

TZ = "Asia/Shanghai"


def _simulated(
    settings: Settings, seconds: float = 900, rate: float = 2.0
) -> tuple[CommunitySimulator, list[tuple[str, dict[str, Any]]]]:
    start = int(time.time() * 1000) - int(seconds * 1000) - 60_000
    sim = CommunitySimulator(
        community_count=1,
        residents_per_community=120,
        seed=11,
        pseudonymiser_key=b"test-key",
        start_ms=start,
    )
    return sim, list(sim.events(seconds, rate))


def _produce(
    settings: Settings, sim: CommunitySimulator | None, events: list[tuple[str, dict[str, Any]]]
) -> None:
    producer = RecordProducer(settings)
    if sim is not None:
        load_reference(producer, sim)
    for name, event in events:
        producer.send(name, event)
    producer.close()


def _expected(events: list[tuple[str, dict[str, Any]]]) -> Counter[str]:
    return Counter(EVENT_TABLES[name] for name, _ in events)


def _final_counts(url: str) -> dict[str, int]:
    writer = open_writer(url)
    try:
        db = writer.database
        return {
            t: int(writer.query(f"SELECT count() FROM {db}.{t} FINAL")[0][0])
            for t in (
                "gate_scans",
                "temperature_readings",
                "health_reports",
                "gate_decisions",
                "alerts",
            )
        }
    finally:
        writer.close()


def _reports(url: str, community_ids: list[str], days: set[dt.date]) -> list[dict[str, Any]]:
    writer = open_writer(url)
    try:
        return [
            build_report(writer, Scope("community", c), d, TZ).to_dict()
            for c in community_ids
            for d in sorted(days)
        ]
    finally:
        writer.close()


def _all_in(expected: Counter[str], *, after_a_tick: bool = False) -> Any:
    def done(runtime: Any, run: Any) -> bool:
        return all(rows_written(runtime, t) >= n for t, n in expected.items()) and (
            not after_a_tick or runtime.decide.stage.ticks > 0  # timers only once caught up
        )

    return done


@pytest.fixture(params=["chdb", "server"])
def sink_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("chdb_url" if request.param == "chdb" else "clickhouse_url"))


def test_redelivery_after_a_crash_before_commit_changes_no_figure(
    topics: Settings, sink_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # at_least_once: the decide stage's offsets are a plain commit after the flush, so a crash
    # before it redelivers the events to the rules as well (exactly_once has no such window)
    settings = topics.replace(
        clickhouse_url=sink_url, sink_flush_s=0.3, processing_guarantee="at_least_once"
    )
    sim, events = _simulated(settings)
    _produce(settings, sim, events)
    expected = _expected(events)
    communities = sorted({e["community_id"] for _, e in events})
    days = {
        dt.datetime.fromtimestamp(e["event_time"] / 1000, ZoneInfo(TZ)).date() for _, e in events
    }

    # timers (silent devices, overdue reports) read this clock: the same in both runs
    frozen = {"clock_ms": lambda: max(e["event_time"] for _, e in events) + 1000}

    async def crash_before_commit(self: Any, offsets: Any) -> None:
        return None  # the rows are in ClickHouse / the outputs in Kafka, no offsets committed

    with monkeypatch.context() as m:
        m.setattr(SinkStage, "_commit_offsets", crash_before_commit)
        m.setattr(DecideStage, "_commit_offsets", lambda self, offsets: None)
        _, run1 = asyncio.run(
            run_pipeline_until(
                settings, _all_in(expected, after_a_tick=True), runtime_kwargs=frozen
            )
        )
    first_counts = _final_counts(sink_url)
    first_reports = _reports(sink_url, communities, days)
    assert {t: first_counts[t] for t in expected} == dict(expected)
    assert first_counts["gate_decisions"] == expected["gate_scans"]

    # the same consumer groups start again: every event is delivered a second time, to rules
    # restored from the changelog (the replay memory is state too)
    _, run = asyncio.run(
        run_pipeline_until(settings, _all_in(expected, after_a_tick=True), runtime_kwargs=frozen)
    )
    # really redelivered (at_least_once: the re-routed copies and the uncommitted internal
    # records both reach the rules; a replayed scan gets its identical decision again)
    redecided = run.rows("gate_decisions")
    assert len(redecided) >= expected["gate_scans"]
    assert len({d["event_id"] for d in redecided}) == expected["gate_scans"]
    # a replayed scan gets the identical decision again; no alert is made a second time
    first = {d["event_id"]: d for d in run1.rows("gate_decisions")}
    assert [d for d in redecided if first[d["event_id"]] != d] == []
    first_alerts = {a["alert_id"] for a in run1.rows("alerts")}
    assert {a["alert_id"] for a in run.rows("alerts")} <= first_alerts
    assert _final_counts(sink_url) == first_counts
    assert _reports(sink_url, communities, days) == first_reports


@pytest.fixture
def own_server() -> Iterator[ClickHouseServer]:
    with ClickHouseServer() as server:
        yield server


def test_clickhouse_outage_mid_stream_loses_and_doubles_nothing(
    topics: Settings, own_server: ClickHouseServer
) -> None:
    url = own_server.url_for("fangxian_outage")
    settings = topics.replace(clickhouse_url=url, sink_flush_s=0.3)
    sim, events = _simulated(settings, seconds=1200)
    half = len(events) // 2
    _produce(settings, sim, events[:half])
    expected = _expected(events)
    state: dict[str, Any] = {"phase": "before", "retries_seen": 0.0}

    async def outage(runtime: Any) -> None:
        if state["phase"] == "before" and all(
            rows_written(runtime, t) >= n for t, n in _expected(events[:half]).items()
        ):
            await asyncio.get_running_loop().run_in_executor(None, own_server.halt)
            state["phase"] = "down"
            await asyncio.get_running_loop().run_in_executor(
                None, _produce, settings, None, events[half:]
            )
            state["down_since"] = time.monotonic()
        elif state["phase"] == "down" and time.monotonic() - state["down_since"] > 4:
            state["retries_seen"] = runtime.metrics.sink_retries._value.get()
            # not in an executor thread: the server is tied to the life of the thread that
            # starts it (PR_SET_PDEATHSIG), and executor threads end with the event loop
            own_server.resume()
            state["phase"] = "up"

    def done(runtime: Any, run: Any) -> bool:
        return state["phase"] == "up" and _all_in(expected)(runtime, run)

    asyncio.run(run_pipeline_until(settings, done, timeout_s=120, during=outage))
    assert state["retries_seen"] > 0  # the worker did meet the outage and retried
    counts = _final_counts(url)
    assert {t: counts[t] for t in expected} == dict(expected)
    assert counts["gate_decisions"] == expected["gate_scans"]
    writer = open_writer(url)
    try:  # nothing doubled even before merges: every event_id exactly once
        for table in expected:
            total, distinct = writer.query(
                f"SELECT count(), uniqExact(event_id) FROM {writer.database}.{table}"
            )[0]
            assert total == distinct == expected[table]
    finally:
        writer.close()
