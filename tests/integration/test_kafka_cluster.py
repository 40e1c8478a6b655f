"""Kafka as a cluster (issue 21): one broker of three killed (SIGKILL) mid-stream and not
restarted while 1,000 scans/s flow through a real decide stage and sink.

The pipeline's topics have replication factor 3 and ``min.insync.replicas`` 2 (the settings a
production cluster of three uses); decisions go on after the leader election, every scan the
devices' producer had acknowledged is decided exactly once (read_committed) and is one row in
ClickHouse; the node then comes back on its data and its replicas rejoin every ISR.

Control, on the same cluster at the same moment: a second pipeline whose topics have
replication factor 1. The partitions the dead node held go offline: the scans sent to them are
never acknowledged (the producer's delivery timeout ends them), none of them is decided — the
control's decide stage, whose transactions write to the offline partitions too, stops deciding
altogether — and what was written there before is unreadable until the node returns.

Every figure is printed (run with ``-s``); stage logs go to ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError

from fangxian.core.settings import SettingError, Settings, Topics
from fangxian.ingest.produce import KeyPartitioner, route
from infra.kafka_broker import TEST_BROKER_PROPERTIES, KafkaBroker
from infra.kafka_cluster import KafkaCluster
from infra.kafka_inspect import describe_topics
from infra.ports import free_port
from infra.topics import create_topics, topic_specs
from schemas import Codec
from schemas.topics import record_partition
from tests.integration.topology_harness import Town, Watch, exact_counts, stage_process

pytestmark = pytest.mark.kafka

RATE = 1000  # scans/s into the replicated pipeline
CONTROL_RATE = 100  # scans/s into the RF=1 control
BEFORE_S = 8  # steady traffic before the kill
AFTER_S = 25  # traffic after it (the node stays down)
WINDOW_S = 5
# broker.session.timeout.ms (Kafka's default, 9 s): how long the controller waits before it
# fences a node that stopped heartbeating and moves its leaderships — the election time
SESSION_S = 9.0
# the longest a decision may be missing: the election, plus the decide transaction's timeout
# (how long the stage waits for a group coordinator that died with the node before it gives
# the transaction up and starts again with a new producer), plus 10 s for the rewind and a
# shared 2-core machine
MAX_GAP_S = SESSION_S + Settings().decide_transaction_timeout_s + 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    with KafkaCluster() as started:
        yield started


class AckedTraffic(threading.Thread):
    """Scans at ``rate`` per second (paced in 50 ms steps), each scan's delivery seen through
    its future: ``acked`` (event id -> partition, time) once the cluster acknowledged it with
    acks=all, ``failed`` (event id -> partition, error) once the producer gave up on it."""

    def __init__(
        self,
        settings: Settings,
        make: Callable[[], dict[str, Any]],
        rate: float,
        **producer_config: Any,
    ) -> None:
        super().__init__(daemon=True)
        self._topics = settings.topics
        self._partitions = settings.event_partitions
        self._codec = Codec()
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            linger_ms=10,
            partitioner=KeyPartitioner(),
            reconnect_backoff_max_ms=1000,
            **producer_config,
        )
        self._make = make
        self._rate = rate
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.sent: dict[str, tuple[int, float]] = {}  # event id -> partition, time sent
        self.acked: dict[str, tuple[int, float]] = {}
        self.failed: dict[str, tuple[int, str]] = {}

    def run(self) -> None:
        began = time.time()
        n = 0
        while not self._halt.is_set():
            due = int((time.time() - began) * self._rate)
            while n < due:
                n += 1
                self._send(self._make())
            time.sleep(0.05)

    def _send(self, scan: dict[str, Any]) -> None:
        event_id = scan["event_id"]
        partition = record_partition("GateScan", scan, self._partitions)
        topic, key = route(self._topics, "GateScan", scan)
        with self._lock:
            self.sent[event_id] = (partition, time.time())
        try:
            future = self._producer.send(topic, self._codec.encode("GateScan", scan), key=key)
        except KafkaError as err:  # no metadata / no buffer space within max_block_ms
            with self._lock:
                self.failed[event_id] = (partition, type(err).__name__)
            return

        def acked(_: Any) -> None:
            with self._lock:
                self.acked[event_id] = (partition, time.time())

        def failed(err: BaseException) -> None:
            with self._lock:
                self.failed[event_id] = (partition, type(err).__name__)

        future.add_callback(acked)
        future.add_errback(failed)

    def stop(self, flush_s: float = 60.0) -> None:
        self._halt.set()
        self.join(timeout=30)
        with contextlib.suppress(KafkaTimeoutError):  # still waiting: neither acked nor failed
            self._producer.flush(timeout=flush_s)
        with contextlib.suppress(KafkaTimeoutError):
            self._producer.close(timeout=1)

    def sent_between(self, start: float, end: float) -> dict[str, int]:
        with self._lock:
            return {e: p for e, (p, t) in self.sent.items() if start <= t < end}


def _settings(cluster: KafkaCluster, name: str, replicas: int, **extra: Any) -> Settings:
    return Settings(
        kafka_bootstrap=cluster.bootstrap,
        app_id=f"fangxian-{name}",
        topics=Topics().with_prefix(f"{name}."),
        event_partitions=3,
        reference_partitions=2,
        replication_factor=replicas,
        min_insync_replicas=min(2, replicas),
        metrics_port=free_port(),
        sink_metrics_port=free_port(),
        sink_flush_s=0.5,
        **extra,
    )


def _group_coordinator_partition(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group`` (Kafka: Utils.abs(hashCode) % n):
    its leader is the group's coordinator."""
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    signed = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if signed == -(1 << 31) else abs(signed)) % partitions  # Utils.abs


def _windows(times: list[float], start: float, end: float) -> list[tuple[int, int]]:
    """(seconds after ``start``, how many of ``times`` fall in that 5-s window)."""
    return [
        (round(t - start), sum(1 for x in times if t <= x < t + WINDOW_S))
        for t in range(int(start) - BEFORE_S, int(end), WINDOW_S)
    ]


def _longest_gap(times: list[float], start: float, end: float) -> tuple[float, float]:
    """The longest time without a decision in [start, end], and where it began (s after
    ``start``)."""
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    gap, at = max((b - a, a) for a, b in itertools.pairwise(points))
    return gap, at - start


def test_a_broker_killed_mid_stream_decisions_go_on_each_scan_once_rf1_control_stalls(
    cluster: KafkaCluster, clickhouse_url: str, tmp_path: Path
) -> None:
    tag = f"kc{os.getpid()}{uuid.uuid4().hex[:6]}"
    main = _settings(cluster, tag, 3, clickhouse_url=clickhouse_url)
    control = _settings(cluster, f"{tag}rf1", 1)
    create_topics(cluster.bootstrap, topic_specs(main))
    create_topics(cluster.bootstrap, topic_specs(control))

    # every topic of the pipeline, internal ones included, as the settings say, on the cluster
    admin = cluster.admin()
    try:
        on_cluster = describe_topics(admin, [s.name for s in topic_specs(main)])
    finally:
        admin.close()
    replication = {
        (s.replication_factor, s.config.get("min.insync.replicas")) for s in on_cluster.values()
    }
    assert replication == {(3, "2")}, replication

    # six communities: every partition of a 3-partition topic has some (schemas.partitioner)
    town, control_town = Town.make(communities=6, households=20), Town.make(6, 5)
    town.load(main)
    control_town.load(control)
    main_topics = [s.name for s in topic_specs(main)]
    internal = ["__consumer_offsets", "__transaction_state"]
    log = tmp_path / "stages.log"
    watch, control_watch = Watch(main), Watch(control)
    watch.start()
    control_watch.start()
    traffic = AckedTraffic(main, lambda: town.scan(direction="IN"), RATE)
    control_traffic = AckedTraffic(
        control,
        lambda: control_town.scan(direction="IN"),
        CONTROL_RATE,
        request_timeout_ms=5000,
        delivery_timeout_ms=15_000,  # a send to an offline partition fails inside the test
    )
    marks: dict[str, float] = {}
    try:
        with (
            stage_process(main, "sink", log) as sink,
            stage_process(main, "decide", log) as decide,
            stage_process(control, "decide", tmp_path / "control.log"),
        ):
            traffic.start()
            control_traffic.start()
            watch.wait_for("the first decision", lambda w: bool(w.decisions), 120)
            control_watch.wait_for("the control's first", lambda w: bool(w.decisions), 120)
            time.sleep(BEFORE_S)
            # the decide group's coordinator: the node whose death the stage feels most (its
            # offsets go through it in every transaction); it leads some of the pipeline's
            # partitions, and with RF=1 one of the control's
            before = cluster.partitions([control.topics.gate_scans, *main_topics, *internal])
            offsets_partition = _group_coordinator_partition(
                main.decide_group, int(TEST_BROKER_PROPERTIES["offsets.topic.num.partitions"])
            )
            victim = before[("__consumer_offsets", offsets_partition)]["leader"]
            marks["kill"] = time.time()
            cluster.kill(victim)
            time.sleep(AFTER_S)
            marks["end"] = time.time()
            during = cluster.partitions([control.topics.gate_scans, *main_topics])
            # what `fangxian doctor` reads: every topic under-replicated, 2 of 3 still in sync
            seen = cluster.ask(lambda admin: describe_topics(admin, main_topics))
            traffic.stop()
            control_traffic.stop(flush_s=20)
            acked = set(traffic.acked)
            watch.wait_for(
                "every acknowledged scan decided", lambda w: acked <= set(w.decisions), 90
            )
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not all(
                exact_counts(clickhouse_url, table, "event_id")[0] >= len(acked)
                for table in ("gate_scans", "gate_decisions")
            ):
                time.sleep(1)
            time.sleep(2)  # a copy committed late would show by now
            assert (sink.poll(), decide.poll()) == (None, None), "a stage died"
            # the node returns on its data and catches up
            marks["restart"] = time.time()
            cluster.start(victim)
            catch_up_s = cluster.wait_in_sync([*main_topics, *internal], timeout_s=90)
            after = cluster.partitions([*main_topics, *internal])
    finally:
        for thread in (traffic, control_traffic):
            if thread.is_alive():
                thread.stop(flush_s=5)
        watch.stop()
        control_watch.stop()

    kill, end = marks["kill"], marks["end"]
    with watch._lock:
        decided_at = dict(watch.decided_at)
        copies = {e: len(ds) for e, ds in watch.decisions.items() if len(ds) > 1}
    times = list(decided_at.values())
    gap, gap_at = _longest_gap(times, kill, end)
    led = sorted(f"{t}[{p}]" for (t, p), v in before.items() if v["leader"] == victim)
    print(
        f"\nkilled node {victim} (the decide group's coordinator) at +0 s; it led {len(led)} "
        f"partitions: {led}\n"
        f"decisions per {WINDOW_S} s (s after the kill, count): {_windows(times, kill, end)}\n"
        f"longest time without a decision after the kill: {gap:.1f} s (from +{gap_at:.1f} s); "
        f"bound {MAX_GAP_S:.0f} s\n"
        f"sent {len(traffic.sent)}, acknowledged {len(acked)}, failed {len(traffic.failed)}, "
        f"decided {len(acked & set(decided_at))}, decided twice {len(copies)}\n"
        f"node {victim} back in every ISR {catch_up_s:.1f} s after its restart"
    )
    assert traffic.failed == {}, list(traffic.failed.items())[:5]
    assert len(acked) == len(traffic.sent)
    assert acked <= set(decided_at)
    assert copies == {}, list(copies.items())[:5]
    assert gap <= MAX_GAP_S, (gap, gap_at)
    # decisions after the gap, not only before it: the last window decides at the offered pace
    offered_last = len(traffic.sent_between(end - WINDOW_S, end))
    decided_last = sum(1 for t in times if end - WINDOW_S <= t < end)
    assert decided_last >= 0.5 * offered_last, (decided_last, offered_last)
    for table in ("gate_scans", "gate_decisions"):
        total, distinct = exact_counts(clickhouse_url, table, "event_id")
        print(f"ClickHouse {table}: total={total} distinct={distinct} acknowledged={len(acked)}")
        assert total == distinct == len(acked), (table, total, distinct, len(acked))
    # the dead node's replicas left the ISRs (as doctor reports it) and came back
    assert {(t.under_replicated > 0, t.fewest_in_sync) for t in seen.values()} == {(True, 2)}
    assert any(victim not in v["isr"] for v in during.values() if v["replicas"] != [victim])
    assert all(v["isr"] == v["replicas"] for v in after.values())

    # ---- control: replication factor 1
    dead = {p for (t, p), v in during.items() if t == control.topics.gate_scans and v["leader"] < 0}
    assert dead, during
    sent_after = control_traffic.sent_between(kill + 1, end)
    to_dead = {e for e, p in sent_after.items() if p in dead}
    to_live = {e for e, p in sent_after.items() if p not in dead}
    with control_watch._lock:
        control_decided = {e for e in control_watch.decisions}
        control_times = list(control_watch.decided_at.values())
        live_in_time = {e for e in to_live if control_watch.decided_at.get(e, end) < end}
    failed_dead = {e for e in to_dead if e in control_traffic.failed}
    print(
        f"control (RF=1): partitions {sorted(dead)} of {control.topics.gate_scans} offline; "
        f"of {len(to_dead)} scans sent to them after the kill {len(failed_dead)} failed, "
        f"{len(to_dead & set(control_traffic.acked))} acknowledged, "
        f"{len(to_dead & control_decided)} decided; of {len(to_live)} sent to the live "
        f"partitions {len(live_in_time)} decided while the node was down, "
        f"{len(to_live & control_decided)} by the end; decisions per {WINDOW_S} s: "
        f"{_windows(control_times, kill, end)}"
    )
    assert to_dead, "no control scan went to the offline partition"
    assert not to_dead & set(control_traffic.acked)
    assert not to_dead & control_decided
    # and the live partitions stall with them: a transaction's decisions (keyed by subject),
    # sink copies and changelog deltas spread over partitions some of which are offline
    assert len(live_in_time) < 0.5 * len(to_live), (len(live_in_time), len(to_live))


def test_three_replicas_on_one_broker_fail_naming_the_setting(kafka_broker: KafkaBroker) -> None:
    """Control for the cluster's topic creation: the same settings on a single broker are
    refused after the wait, naming FANGXIAN_REPLICATION_FACTOR, and create nothing."""
    name = f"kc1b{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        app_id=f"fangxian-{name}",
        topics=Topics().with_prefix(f"{name}."),
        replication_factor=3,
        min_insync_replicas=2,
    )
    began = time.monotonic()
    with pytest.raises(SettingError) as refused:
        create_topics(kafka_broker.bootstrap, topic_specs(settings), wait_for_brokers_s=2)
    assert refused.value.setting == "FANGXIAN_REPLICATION_FACTOR"
    assert "the cluster has 1" in refused.value.problem
    assert 2 <= time.monotonic() - began < 30
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert not {s.name for s in topic_specs(settings)} & set(admin.list_topics())
    finally:
        admin.close()
