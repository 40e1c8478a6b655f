"""The fault matrix of issue 10, against real Apache Kafka and the real ClickHouse 18.16 server.

Each test counts what staff and the database see (decisions and alerts read read_committed,
rows in ClickHouse) while a fault happens under steady scan traffic, and where a control can
show the failure the design guards against, it runs one. Rates are modest (a 2-core machine
shared with the broker and the database); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fangxian.core.settings import Settings
from infra.clickhouse_server import ClickHouseServer
from infra.kafka_broker import KafkaBroker
from infra.ports import free_port, port_is_open
from streams.runtime import DecideRuntime, Runtime
from streams.stages.decide import DecideStage, TaskBatch
from tests.integration.scenario_script import Labels, temperature_reading
from tests.integration.topology_harness import (
    Town,
    Traffic,
    Watch,
    decided_share,
    decision_rate,
    exact_counts,
    now_ms,
    stage_process,
)

EVENT_TABLES = ("gate_scans", "temperature_readings", "health_reports")


@pytest.fixture
def own_server() -> Iterator[ClickHouseServer]:
    with ClickHouseServer() as server:
        yield server


class _CoupledDecide(DecideStage):
    """The control of the outage test: a decide stage wired to wait on the sink — after each
    commit it waits until the sink has written what it holds, as the old single loop did. The
    commit runs in the stage's thread and the sink in the asyncio loop, so the sink's state is
    polled from here."""

    sink: Any

    def _commit(self, work: dict[int, TaskBatch]) -> None:
        super()._commit(work)
        while not self._stop.is_set() and (
            self.sink._pending.row_count or self.sink._flushing is not None
        ):
            time.sleep(0.02)


async def _outage_run(
    settings: Settings,
    server: ClickHouseServer,
    town: Town,
    *,
    rate: float,
    outage_s: float,
    rebalance: bool,
    coupled: bool,
) -> dict[str, Any]:
    """Scans at ``rate`` while ClickHouse is stopped for ``outage_s`` (a second decide member
    joins and leaves in the middle if ``rebalance``); returns what was measured."""
    runtime = Runtime(settings)
    if coupled:
        runtime.decide.stage.__class__ = _CoupledDecide
        runtime.decide.stage.sink = runtime.sink.stage  # type: ignore[attr-defined]
    await runtime.start()
    watch = Watch(settings)
    watch.start()
    traffic = Traffic(settings, town.scan, rate)
    running = asyncio.create_task(runtime.run())
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}
    second: DecideRuntime | None = None
    try:
        traffic.start()
        await asyncio.sleep(6)
        marks["down"] = time.time()
        # halt waits for the server to exit: not on the loop the stages run on
        await loop.run_in_executor(None, server.halt)
        if rebalance:
            await asyncio.sleep(outage_s / 3)
            second = DecideRuntime(settings)  # a deploy, a scale-out, a missed heartbeat
            await second.start()
            second_task = asyncio.create_task(second.run())
            marks["joined"] = time.time()
            await asyncio.sleep(8)
            await second.stop()
            second_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await second_task
            marks["left"] = time.time()
            await asyncio.sleep(max(0.0, marks["down"] + outage_s - time.time()))
        else:
            await asyncio.sleep(outage_s)
        # resume on this thread: the server lives as long as the thread that starts it
        server.resume()
        marks["up"] = time.time()
        await asyncio.sleep(4)
        await loop.run_in_executor(None, traffic.stop)
        marks["end"] = time.time()
        sent = len(traffic.sent)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
            len(watch.decisions) < sent or runtime.sink.stage.rows_written()["gate_scans"] < sent
        ):
            if running.done():
                running.result()
            await asyncio.sleep(0.5)
        windows = [
            decision_rate(traffic, watch, t, t + 5)
            for t in range(int(marks["down"]), int(marks["up"]) - 4, 5)
        ]
        return {
            "sent": sent,
            "before_outage": decision_rate(traffic, watch, marks["down"] - 4, marks["down"]),
            "during_outage": decision_rate(traffic, watch, marks["down"], marks["up"]),
            "windows": windows,
            "decided": len(watch.decisions),
            "retries": runtime.metrics.sink_retries._value.get(),
        }
    finally:
        watch.stop()
        with contextlib.suppress(Exception):
            server.resume()
        await runtime.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running


def test_clickhouse_outage_with_a_rebalance_never_slows_decisions(
    topics: Settings, own_server: ClickHouseServer, tmp_path: Path
) -> None:
    """ClickHouse stopped 30 s (60 s in the issue; shortened for CI) at 1,000 scans/s, and a
    second decide process joins the group for 8 s in the middle: decisions keep pace
    throughout; after ClickHouse is back every event is in it exactly once. The stages run as
    the processes ``fangxian worker`` starts (the test process only produces and watches)."""
    url = own_server.url_for("fangxian_outage")
    settings = _decide_settings(topics, url)
    town = Town.make(communities=6, households=40)
    town.load(settings)
    log = tmp_path / "stages.log"
    watch = Watch(settings)
    watch.start()
    traffic = Traffic(settings, town.scan, 1000)
    outage_s = 30.0
    marks: dict[str, float] = {}
    try:
        with stage_process(settings, "sink", log), stage_process(settings, "decide", log):
            first = town.scan()
            traffic.send("GateScan", first)
            watch.wait_for("the first decision", lambda w: first["event_id"] in w.decisions, 90)
            traffic.start()
            time.sleep(8)
            marks["down"] = time.time()
            own_server.halt()
            time.sleep(outage_s / 3)
            second_settings = settings.replace(metrics_port=free_port())
            with stage_process(second_settings, "decide", log):  # a deploy, a scale-out
                marks["joined"] = time.time()
                time.sleep(8)
            marks["left"] = time.time()
            time.sleep(max(0.0, marks["down"] + outage_s - time.time()))
            own_server.resume()
            marks["up"] = time.time()
            time.sleep(4)
            traffic.stop()
            sent = set(traffic.sent)
            watch.wait_for("every decision", lambda w: sent <= set(w.decisions), 120)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if exact_counts(url, "gate_scans", "event_id")[1] >= len(sent):
                    break
                time.sleep(1)
    finally:
        traffic.stop()
        watch.stop()
    # the measure: decisions committed per second over scans offered per second,
    # over the outage and per 5-s window (and, reported, the share decided within 5 s)
    windows = [
        round(decision_rate(traffic, watch, t, t + 5), 3)
        for t in range(int(marks["down"]), int(marks["up"]) - 4, 5)
    ]
    during = decision_rate(traffic, watch, marks["down"], marks["up"])
    within = decided_share(traffic, watch, marks["down"], marks["up"], within_s=5)
    seconds = [
        round(decision_rate(traffic, watch, t, t + 1), 2)
        for t in range(int(marks["down"]), int(marks["up"]))
    ]
    moments = {k: round(v - marks["down"], 1) for k, v in marks.items()}
    print(
        f"outage: sent={len(sent)} rate during outage={during:.3f} windows={windows} "
        f"decided within 5 s={within:.3f} per second={seconds} marks={moments}"
    )
    assert during >= 0.95, (during, windows, seconds, moments)
    assert min(windows) >= 0.8, (during, windows, seconds, moments)  # the rebalance may dip one
    for table, key in (("gate_scans", "event_id"), ("gate_decisions", "event_id")):
        total, distinct = exact_counts(url, table, key)
        assert total == distinct == len(sent), (table, total, distinct)
    total, distinct = exact_counts(url, "alerts", "alert_id")
    assert total == distinct


def test_control_a_decide_stage_that_waits_on_the_sink_stalls_in_an_outage(
    topics: Settings, own_server: ClickHouseServer
) -> None:
    """The control: the same measurement, with a decide stage that waits on the sink after
    each batch (the old single loop), in one process at a rate it keeps up with before the
    outage — and during the outage the gates stand still."""
    url = own_server.url_for("fangxian_outage_control")
    settings = topics.replace(clickhouse_url=url, sink_flush_s=0.5)
    town = Town.make(communities=6, households=40)
    town.load(settings)
    report = asyncio.run(
        _outage_run(
            settings, own_server, town, rate=200, outage_s=12, rebalance=False, coupled=True
        )
    )
    print("coupled control report", report)
    # the coupled design already lags on a loaded machine; what it shows is the stall
    assert report["before_outage"] >= 0.5, report  # the measurement sees decisions flow
    assert report["during_outage"] < 0.25 * report["before_outage"], report  # gates stand still


# ---------------------------------------------------------------------------- kill -9


def _decide_settings(topics: Settings, clickhouse_url: str) -> Settings:
    return topics.replace(
        clickhouse_url=clickhouse_url,
        metrics_port=free_port(),
        sink_metrics_port=free_port(),
        sink_flush_s=0.5,
    )


def test_decide_worker_killed_mid_stream_loses_doubles_and_forgets_nothing(
    topics: Settings, clickhouse_url: str, tmp_path: Path
) -> None:
    """``kill -9`` of the decide process under 300 scans/s, then a new one: every scan has
    exactly one committed decision, no alert twice (Kafka read_committed and ClickHouse), the
    household's exit quota and an open fever recheck survive. (The control — without the
    changelog restore the quota resets — is test_state_recovery's control case.)"""
    settings = _decide_settings(topics, clickhouse_url)
    town = Town.make(communities=4, households=30)
    town.load(
        settings,
        entry_limit_scope="HOUSEHOLD",
        entry_limit_count=1,
        entry_limit_direction="OUT",
        entry_limit_action="DENY",
    )
    household = next(iter(town.households))
    mother, son = town.households[household]
    feverish = town.households[list(town.households)[1]][0]
    log = tmp_path / "stages.log"
    watch = Watch(settings)
    watch.start()
    # background scans are IN (no quota effect) and never of the scripted people (a normal
    # gate reading of the feverish resident would settle the recheck)
    scripted = frozenset({mother, son, feverish})
    traffic = Traffic(settings, lambda: town.scan(avoid=scripted), 300)
    try:
        with stage_process(settings, "sink", log):
            with stage_process(settings, "decide", log) as first:
                traffic.start()
                out = town.scan(subject=mother, direction="OUT")
                hot = town.scan(subject=feverish, temperature_c=37.6)
                traffic.send("GateScan", out)
                traffic.send("GateScan", hot)
                watch.wait_for(
                    "the first decisions",
                    lambda w: out["event_id"] in w.decisions and hot["event_id"] in w.decisions,
                    timeout_s=90,
                )
                time.sleep(3)
                os.kill(first.pid, signal.SIGKILL)  # mid-stream, mid-transaction likely
                first.wait()
            killed_at = time.time()
            with stage_process(settings, "decide", log):
                time.sleep(2)
                son_out = town.scan(subject=son, direction="OUT")
                recheck = temperature_reading(
                    Labels(), "recheck", community=hot["community_id"], subject=feverish,
                    t=now_ms(), temperature_c=37.8,
                )  # fmt: skip
                traffic.send("GateScan", son_out)
                traffic.send("TemperatureReading", recheck)
                time.sleep(5)
                traffic.stop()
                sent = set(traffic.sent)
                assert len(sent) >= 1000, len(sent)  # the background traffic ran throughout
                watch.wait_for(
                    "a decision for every scan",
                    lambda w: sent <= set(w.decisions),
                    timeout_s=120,
                )
                time.sleep(2)
                assert time.time() - killed_at < 150
                assert watch.decision_of(out["event_id"])["decision"] == "ALLOW"  # type: ignore[index]
                son_decision = watch.decision_of(son_out["event_id"])
                assert son_decision is not None
                assert (son_decision["decision"], son_decision["reasons"]) == (
                    "DENY",
                    ["ENTRY_LIMIT_EXCEEDED"],
                )  # the quota was not reset by the kill
                assert watch.decision_of(hot["event_id"])["decision"] == "RECHECK"  # type: ignore[index]
                watch.wait_for(
                    "the recheck confirmed",
                    lambda w: any(
                        a["alert_type"] == "FEVER_CONFIRMED" and a["subject_id"] == feverish
                        for a in w.alerts
                    ),
                    timeout_s=30,
                )  # the open recheck survived the kill
                doubled = {e: ds for e, ds in watch.decisions.items() if len(ds) > 1}
                assert doubled == {}, list(doubled.items())[:3]
                assert [a for a, n in watch.alert_counts().items() if n > 1] == []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if exact_counts(clickhouse_url, "gate_decisions", "event_id")[0] >= len(sent):
                        break
                    time.sleep(1)
    finally:
        traffic.stop()
        watch.stop()
    for table, key, n in (
        ("gate_scans", "event_id", len(sent)),
        ("gate_decisions", "event_id", len(sent)),
        ("alerts", "alert_id", None),
    ):
        total, distinct = exact_counts(clickhouse_url, table, key)
        assert total == distinct, (table, total, distinct)
        if n is not None:
            assert total == n, (table, total, n)


# ---------------------------------------------------------------------------- 1 → 3 → 2


def _subject_keyed_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old keying, for the control: a scan is decided by the task of its *subject's*
    partition, not its community's — a household's two residents can then be decided by two
    tasks, each with its own quota state — and every task fires every community's timers.
    Built on the new router: what ``Router.enter`` sorts by community is sorted again by
    subject (the other task's scans are forwarded over the reroute topic, as the router
    forwards any event on the wrong partition)."""
    from schemas import Codec
    from streams.publish import OutRecord, partition_for
    from streams.stages.route import Entry, Router, provenance_headers

    original = Router.enter
    codec = Codec()

    def by_subject(router: Router, value: bytes) -> int:
        subject = codec.decode("GateScan", value, validate=False)["subject_id"]
        return partition_for(subject.encode(), router._partitions)

    def enter(self: Router, messages: Any, partition: int) -> Entry:
        entry = original(self, messages, partition)
        out = Entry(dead=entry.dead)
        for msg, name, event in entry.mine:
            owner = partition
            if name == "GateScan" and msg.value is not None:
                owner = by_subject(self, msg.value)
            if owner == partition:
                out.mine.append((msg, name, event))
            else:
                out.forward.append(
                    OutRecord(
                        self._topic, event["community_id"].encode(), msg.value, owner,
                        provenance_headers(msg), msg.timestamp if msg.timestamp >= 0 else None,
                    )
                )  # fmt: skip
        for r in entry.forward:
            if dict(r.headers)["src"].endswith(b"gate.scans") and r.value is not None:
                r = OutRecord(
                    r.topic, r.key, r.value, by_subject(self, r.value), r.headers, r.timestamp_ms
                )
            out.forward.append(r)
        return out

    monkeypatch.setattr(Router, "enter", enter)
    monkeypatch.setattr(Router, "owns", lambda self, p: lambda cid: True)


async def _scaling_run(settings: Settings, town: Town, outs: dict[str, str]) -> Watch:
    """One OUT scan of every resident (``outs``: event id → household, filled here), spread
    over the run, while the group goes 1 → 3 → 2 decide members; IN scans after that."""
    members: list[tuple[DecideRuntime, asyncio.Task[None]]] = []

    async def add() -> None:
        rt = DecideRuntime(settings)
        await rt.start()
        members.append((rt, asyncio.create_task(rt.run())))

    async def remove() -> None:
        rt, task = members.pop()
        await rt.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    watch = Watch(settings)
    watch.start()
    loop = asyncio.get_running_loop()
    residents = [(h, r) for h, members in town.households.items() for r in members]
    random.shuffle(residents)

    def make() -> dict[str, Any]:
        if not residents:
            return town.scan(direction="IN")
        household, rid = residents.pop()
        scan = town.scan(direction="OUT", subject=rid)
        outs[scan["event_id"]] = household
        return scan

    traffic = Traffic(settings, make, 60)
    try:
        await add()
        traffic.start()
        await asyncio.sleep(8)
        await add()
        await add()
        await asyncio.sleep(12)
        await remove()
        await asyncio.sleep(10)
        await loop.run_in_executor(None, traffic.stop)
        sent = set(traffic.sent)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not sent <= set(watch.decisions):
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # the last ticks
    finally:
        watch.stop()
        while members:
            await remove()
    return watch


@pytest.mark.parametrize(
    "old_keying",
    [
        pytest.param(False, id="by community: quotas exact, timers once"),
        pytest.param(True, id="control: keyed by subject, timers in every task"),
    ],
)
def test_scaling_1_3_2_decide_workers_keeps_quotas_exact_and_timers_once(
    topics: Settings, monkeypatch: pytest.MonkeyPatch, old_keying: bool
) -> None:
    settings = topics
    town = Town.make(communities=6, households=300)
    limit = 1
    town.load(
        settings,
        entry_limit_scope="HOUSEHOLD",
        entry_limit_count=limit,
        entry_limit_direction="OUT",
        entry_limit_action="DENY",
        report_deadline_minute=0,  # every observed resident without a report today is overdue
    )
    # a third resident of every household under home observation (never scanned, so the
    # quota pair is untouched): a REPORT_OVERDUE timer each
    from fangxian.ingest.produce import RecordProducer
    from tests.integration.scenario_script import resident as resident_record

    observed = []
    producer = RecordProducer(settings)
    today = now_ms() // 86_400_000
    for household in town.households:
        producer.send(
            "Resident",
            resident_record(
                f"{household}-obs", community=town.community_of[household],
                household=household, updated_at=now_ms(), status="HOME_OBSERVATION",
                observation_start=today - 3,
            ),
        )  # fmt: skip
        observed.append(f"{household}-obs")
    producer.close()
    if old_keying:
        _subject_keyed_route(monkeypatch)
    outs: dict[str, str] = {}
    watch = asyncio.run(_scaling_run(settings, town, outs))

    assert set(outs) <= set(watch.decisions)  # every OUT scan was decided
    allowed: dict[str, int] = dict.fromkeys(town.households, 0)
    for event_id, household in outs.items():
        if watch.decisions[event_id][0]["decision"] == "ALLOW":
            allowed[household] += 1
    over = {h: n for h, n in allowed.items() if n > limit}
    overdue = [a for a in watch.alerts if a["alert_type"] == "REPORT_OVERDUE"]
    fired: dict[str, int] = {}
    for a in overdue:
        fired[a["alert_id"]] = fired.get(a["alert_id"], 0) + 1
    twice = {k: n for k, n in fired.items() if n > 1}
    print(f"households over quota: {len(over)}; overdue alerts {len(overdue)}, twice {len(twice)}")
    if old_keying:
        assert over or twice, "the control should show the old design failing"
        return
    assert over == {}
    scanned = set(outs.values())  # households with at least one OUT offered in the run
    assert len(scanned) > len(town.households) // 2
    none_out = sorted(h for h in scanned if allowed[h] == 0)
    assert none_out == []  # whoever asked first went out: exactly one per household
    assert twice == {}
    assert {a["subject_id"] for a in overdue} == set(observed)  # every timer fired, once


# ------------------------------------------------------------------- (c) broker restart


@pytest.fixture
def own_kafka() -> Iterator[KafkaBroker]:
    """A broker of this test alone (its own data dir and ports): restarting the session broker
    would break every other test that holds a connection to it."""
    with KafkaBroker() as broker:
        yield broker


def test_broker_stopped_and_restarted_on_the_same_data_loses_and_doubles_nothing(
    own_kafka: KafkaBroker, clickhouse_url: str, tmp_path: Path
) -> None:
    """Case (c): the Kafka broker stops for ~12 s under 300 scans/s and comes back on the same
    data. The decide and sink stage processes are never touched: they (and the devices'
    producer, which buffers and retries) recover by themselves. Every scan sent has exactly
    one committed decision, ClickHouse holds each scan and decision once, no alert twice.
    Control: the outage is real — the broker port refuses connections throughout the window,
    and no decision is committed in it."""
    from infra.topics import create_topics, topic_specs

    name = f"bk{os.getpid()}"
    settings = Settings(
        kafka_bootstrap=own_kafka.bootstrap,
        app_id=f"fangxian-{name}",
        event_partitions=3,
        reference_partitions=2,
        clickhouse_url=clickhouse_url,
        metrics_port=free_port(),
        sink_metrics_port=free_port(),
        sink_flush_s=0.5,
    )
    create_topics(own_kafka.bootstrap, topic_specs(settings))
    town = Town.make(communities=4, households=30)
    town.load(settings)
    log = tmp_path / "stages.log"
    watch = Watch(settings)
    watch.start()
    traffic = Traffic(settings, lambda: town.scan(direction="IN"), 300)
    marks: dict[str, float] = {}
    probes: list[bool] = []
    try:
        with (
            stage_process(settings, "sink", log) as sink,
            stage_process(settings, "decide", log) as decide,
        ):
            pids = (sink.pid, decide.pid)
            traffic.start()
            watch.wait_for("the first decisions", lambda w: len(w.decisions) > 300, 120)
            time.sleep(3)
            marks["down"] = time.time()
            halt = threading.Event()

            def probe() -> None:  # the port, every 0.5 s, while the broker is meant to be away
                time.sleep(1.5)  # SIGTERM, the broker's own shutdown
                while not halt.is_set() and time.time() < marks["down"] + 12.0:
                    probes.append(port_is_open(own_kafka.port))
                    time.sleep(0.5)
                marks["window_end"] = time.time()

            prober = threading.Thread(target=probe, daemon=True)
            prober.start()
            # on this thread: the broker dies with the thread that spawned it (PDEATHSIG)
            own_kafka.restart(down_s=12.0)
            halt.set()
            prober.join(timeout=10)
            marks["up"] = time.time()
            time.sleep(8)
            traffic.stop()
            sent = set(traffic.sent)
            watch.wait_for(
                "a decision for every scan", lambda w: sent <= set(w.decisions), timeout_s=120
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if exact_counts(clickhouse_url, "gate_decisions", "event_id")[0] >= len(sent):
                    break
                time.sleep(1)
            time.sleep(2)
            # nobody restarted a stage: the same two processes ran the whole time
            assert (sink.poll(), decide.poll()) == (None, None)
            assert (sink.pid, decide.pid) == pids
    finally:
        traffic.stop()
        watch.stop()
    with watch._lock:
        in_window = sum(
            1 for t in watch.decided_at.values() if marks["down"] + 1.5 <= t < marks["window_end"]
        )
        after = sum(1 for t in watch.decided_at.values() if t >= marks["up"])
    sent_down = len(traffic.sent_between(marks["down"], marks["up"]))
    print(
        f"broker restart: sent={len(sent)} sent_while_down={sent_down} decided_in_window="
        f"{in_window} decided_after_up={after} down_for={marks['up'] - marks['down']:.1f}s "
        f"refused_by_the_producer={traffic.refused}"
    )
    assert probes and not any(probes), probes  # the control: the broker really was away
    assert in_window == 0  # and nothing was committed while it was
    assert sent_down > 1000  # scans kept coming during the outage, buffered by the producer
    counts = {
        table: exact_counts(clickhouse_url, table, key)
        for table, key in (
            ("gate_scans", "event_id"),
            ("gate_decisions", "event_id"),
            ("alerts", "alert_id"),
        )
    }
    # nothing lost (what the issue asks): every scan decided (waited for above) and in ClickHouse
    for table in ("gate_scans", "gate_decisions"):
        assert counts[table][1] == len(sent), (table, counts[table], len(sent))
    # nothing doubled: no decision twice read_committed (the transaction that held a batch when
    # the broker stopped is aborted and redone, never committed with a retried copy)
    doubled = {e: ds for e, ds in watch.decisions.items() if len(ds) > 1}
    assert doubled == {}, (
        len(doubled),
        [
            (e, [d["decided_at"] for d in ds], traffic.sent[e] - marks["down"])
            for e, ds in doubled.items()
        ][:5],
    )
    assert [a for a, n in watch.alert_counts().items() if n > 1] == []
    for table, (total, distinct) in counts.items():
        assert total == distinct, (table, total, distinct)
