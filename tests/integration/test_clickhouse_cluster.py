"""ClickHouse as a cluster (``sinks/cluster.py``) on 2 shards × 2 replicas of the Debian server
18.16 with Apache ZooKeeper (``infra/clickhouse_cluster.py``), nodes dying on the way:

- the migrations create replicated local tables, Distributed tables, the roll-ups' views and the
  BI views on every node, ON CLUSTER; a sink restarting while a node is down is not held up;
- a retried insert is dropped by the replicated tables, through either replica (the
  exactly-once story of the sink, re-checked); controls: without the sink's ``ingested_at``
  stamp, and with ``insert_deduplicate=0``, it doubles;
- sharded by county, each county lives on one shard (control: by community it spreads);
- one replica killed (``kill -9``) during the sink's inserts: the sink carries on through the
  other replica (Distributed writes and per-shard writes), and afterwards ``count() ==
  uniqExact(id) == sent`` on the cluster and on every replica; control: a sink whose URL names
  only the killed node cannot write until it returns;
- one whole shard down: the sink waits and pauses its own consumption, the decide stage decides
  on, nothing is lost when the shard returns; control: while it is down the cluster lacks rows;
- the daily report, the county roll-up, contacts, readback, the BI views and ``forget`` on the
  cluster equal those of one server for the same rows (and the reports the hand-computed
  figures), with a county whose communities lie on both shards.

The pipeline cases run the real worker (``streams.runtime.Runtime``: decide and sink stages in
one process, sharing nothing) against the session's Kafka broker. Figures are printed
(``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clickhouse_driver.errors import ServerException
from test_reports_scenario import (
    COMMUNITY_A,
    DAY,
    DAY_END,
    DAY_START,
    RETENTION_DAYS,
    SUBJECT,
    TIMEZONE,
    WINDOW_MS,
    Scenario,
    build_scenario,
    community_code,
    expected_report,
    write_scenario,
)

from fangxian.console.history import History
from fangxian.core.settings import Settings
from fangxian.demo import load_reference
from fangxian.ingest.produce import RecordProducer
from fangxian.reporting.contacts import find_contacts
from fangxian.reporting.forget import forget_subject
from fangxian.sim import CommunitySimulator
from infra.clickhouse_cluster import CLUSTER, ClickHouseCluster, ClusterNode
from schemas.topics import EVENT_TABLES
from sinks import Connection, SinkUnavailable, migrate, open_writer
from sinks.cluster import LOCAL_SUFFIX, ShardedWriter, sync_replicas
from sinks.readback import read_contract_rows
from sinks.reports import Scope, build_report
from sinks.rows import INGESTED_AT
from tests.conftest import unique_name
from tests.integration.pipeline_harness import rows_written, run_pipeline_until

pytestmark = pytest.mark.clickhouse_server

MODES = ["distributed", "shards"]
EVENTS_PER_S = 250.0  # the producer's pace: ~12 s of flow, nodes die in the middle of it
ID_OF = {"alerts": "alert_id", "dead_letters": "dead_letter_id"}
TABLES = ("gate_scans", "temperature_readings", "health_reports", "gate_decisions", "alerts")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClickHouseCluster]:
    # no background merges: a doubled row would stay visible to count() (ReplacingMergeTree
    # merges would otherwise collapse it and hide a failed deduplication)
    with ClickHouseCluster(shards=2, replicas=2, merges=False) as started:
        print(
            f"\nClickHouse cluster {started.version}: 2 shards × 2 replicas + ZooKeeper in "
            f"{started.start_seconds:.1f} s"
        )
        yield started


@pytest.fixture
def merging_cluster() -> Iterator[ClickHouseCluster]:
    """A cluster of its own with background merges, which ``forget`` needs: 18.16 runs a
    mutation on a replicated table as a merge of each part."""
    with ClickHouseCluster(shards=2, replicas=2) as started:
        yield started


@pytest.fixture
def whole(cluster: ClickHouseCluster) -> Iterator[ClickHouseCluster]:
    """The module's cluster, every node running again after the test (in this, the main,
    thread: a node lives as long as the thread that started it)."""
    yield cluster
    for node in cluster.nodes:
        if not node.running:
            cluster.start_replica(node.name)


def _writer(cluster: ClickHouseCluster, database: str, insert: str = "distributed") -> Connection:
    return open_writer(cluster.url_for(database), cluster=CLUSTER, insert=insert)


def _node_at(cluster: ClickHouseCluster, host_port: tuple[str, int]) -> ClusterNode:
    (node,) = [n for n in cluster.nodes if n.tcp_port == host_port[1]]
    return node


def _on_node(cluster: ClickHouseCluster, node: str, sql: str) -> Any:
    client = cluster.client(node)
    try:
        return client.execute(sql)
    finally:
        client.disconnect()


def _counts(writer: Connection, table: str, *, where: str = "1") -> tuple[int, int]:
    """(count(), uniqExact(id)) of ``table`` across the cluster — no FINAL, no merge."""
    db, key = writer.database, ID_OF.get(table, "event_id")
    ((total, distinct),) = writer.query(
        f"SELECT count(), uniqExact({key}) FROM {db}.{table} WHERE {where}"
    )
    return int(total), int(distinct)


def _dropped_blocks(cluster: ClickHouseCluster, nodes: list[str] | None = None) -> int:
    """Inserted blocks the replicated tables recognised as already written, on ``nodes``
    (default all; ProfileEvent DuplicatedInsertedBlocks, counted since each node started)."""
    return sum(
        int(v[0][0]) if v else 0
        for v in (
            _on_node(
                cluster,
                n.name,
                "SELECT value FROM system.events WHERE event = 'DuplicatedInsertedBlocks'",
            )
            for n in cluster.nodes
            if nodes is None or n.name in nodes
        )
    )


def _replica_counts(cluster: ClickHouseCluster, database: str, table: str) -> dict[str, int]:
    return {
        n.name: int(
            _on_node(cluster, n.name, f"SELECT count() FROM {database}.{table}_local")[0][0]
        )
        for n in cluster.nodes
    }


# --- migrations ---------------------------------------------------------------------------------


def test_migrations_create_replicated_and_distributed_tables_on_every_node(
    whole: ClickHouseCluster,
) -> None:
    database = unique_name("cl_")
    writer = _writer(whole, database)
    try:
        began = time.monotonic()
        applied = migrate(writer, retention_days=RETENTION_DAYS)
        print(f"migrations ON CLUSTER: {len(applied)} in {time.monotonic() - began:.1f} s")
        assert len(applied) >= 6
        for node in whole.nodes:
            engines = dict(
                _on_node(
                    whole,
                    node.name,
                    f"SELECT name, engine FROM system.tables WHERE database = '{database}'",
                )
            )
            for table in (*TABLES, "dead_letters", "alert_actions", "audit_log"):
                assert engines[table] == "Distributed", (node.name, table)
                assert engines[table + LOCAL_SUFFIX].startswith("Replicated"), (node.name, table)
            for rollup in ("gate_minute", "alert_minute", "decision_minute", "health_day"):
                assert engines[rollup + LOCAL_SUFFIX] == "ReplicatedAggregatingMergeTree"
                assert engines[rollup + "_mv"] == "MaterializedView"
            assert engines["bi_county_hourly"] == "View"
            assert engines["schema_migrations"] == "ReplicatedReplacingMergeTree"
        sync_replicas(writer)
        for node in whole.nodes:  # one replicated bookkeeping table: every node knows
            versions = _on_node(
                whole, node.name, f"SELECT count() FROM {database}.schema_migrations"
            )
            assert versions[0][0] == len(applied)
        # a shard's replicas share a ZooKeeper path; the shards do not
        paths = {
            n.name: _on_node(
                whole,
                n.name,
                "SELECT zookeeper_path FROM system.replicas"
                f" WHERE database = '{database}' AND table = 'gate_scans_local'",
            )[0][0]
            for n in whole.nodes
        }
        assert paths["s1r1"] == paths["s1r2"] != paths["s2r1"] == paths["s2r2"]

        # a sink restarting while a replica is down: nothing pending, so no ON CLUSTER
        # statement that would wait for the dead node
        whole.kill("s2r2")
        began = time.monotonic()
        assert migrate(writer, retention_days=RETENTION_DAYS) == []
        quick = time.monotonic() - began
        # control: a statement ON CLUSTER does wait for the dead node (here up to 2 s; 18.16
        # takes distributed_ddl_task_timeout from the session, not from the query's settings)
        client = whole.client("s1r1")
        began = time.monotonic()
        try:
            client.execute("SET distributed_ddl_task_timeout = 2")
            with pytest.raises(ServerException) as raised:
                client.execute(
                    f"CREATE TABLE IF NOT EXISTS {database}.probe ON CLUSTER {CLUSTER} (x UInt8)"
                    " ENGINE = Memory"
                )
            assert raised.value.code == 159  # TIMEOUT_EXCEEDED, "1 unfinished hosts"
        finally:
            client.disconnect()
        waited = time.monotonic() - began
        print(f"migrate with a node down: {quick:.2f} s; a DDL ON CLUSTER waited {waited:.1f} s")
        assert quick < 1.0 and waited >= 2.0
    finally:
        writer.close()


# --- the exactly-once story on replicated tables ------------------------------------------------


def _scans(n: int, communities: list[str], tag: str) -> list[dict[str, Any]]:
    base = 1_700_000_000_000
    return [
        {
            "event_id": f"{tag}-{i:05d}",
            "community_id": communities[i % len(communities)],
            "gate_id": "east",
            "device_id": "east-qr",
            "direction": "IN" if i % 2 else "OUT",
            "subject_type": "RESIDENT",
            "subject_id": f"{i % 97:04d}" + "cd" * 12 + f"{i % 97:04d}",
            "household_id": None,
            "method": "QR",
            "health_code": "GREEN",
            "face_consent": False,
            "temperature_c": 36.5,
            "event_time": base + i * 1000,
        }
        for i in range(n)
    ]


def _stamped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As the sink sends a batch: one ``ingested_at`` on every row, set before the first try."""
    return [{**r, INGESTED_AT: 1_700_000_500_000} for r in rows]


def test_a_retried_insert_is_dropped_by_the_replicated_tables(whole: ClickHouseCluster) -> None:
    database = unique_name("cl_")
    communities = [community_code("350100", i) for i in range(1, 9)]
    distributed = _writer(whole, database)
    first = ShardedWriter(_writer(whole, database), replica_offset=0)
    second = ShardedWriter(_writer(whole, database), replica_offset=1)
    try:
        migrate(distributed, retention_days=RETENTION_DAYS)
        # the sink's retry after a lost answer, a second later: through a Distributed table …
        batch = _stamped(_scans(2000, communities, "a"))
        distributed.write("gate_scans", batch)
        time.sleep(1.1)
        dropped = _dropped_blocks(whole)
        distributed.write("gate_scans", batch)
        assert _dropped_blocks(whole) > dropped
        # … and per shard, the retry through each shard's other replica
        other = _stamped(_scans(2000, communities, "b"))
        first.write("gate_scans", other)
        time.sleep(1.1)
        dropped = _dropped_blocks(whole)
        second.write("gate_scans", other)
        assert _dropped_blocks(whole) > dropped
        assert first.current_host(1) != second.current_host(1)
        assert first.current_host(2) != second.current_host(2)
        sync_replicas(distributed)
        assert _counts(distributed, "gate_scans") == (4000, 4000)
        # a community's rows are on one shard, the one both write paths route it to
        for node in whole.nodes:
            held = {
                str(c)
                for (c,) in _on_node(
                    whole,
                    node.name,
                    f"SELECT DISTINCT community_id FROM {database}.gate_scans_local",
                )
            }
            assert held == {c for c in communities if first.shard_of(c) == node.shard}
        assert {first.shard_of(c) for c in communities} == {1, 2}

        # controls: a retry is a new block when ingested_at is left to the server's DEFAULT
        # now() (what every retry did before the sink stamped its batches), or when insert
        # deduplication is off
        unstamped = _scans(2000, communities, "c")
        distributed.write("gate_scans", unstamped)
        time.sleep(1.1)
        dropped = _dropped_blocks(whole)
        distributed.write("gate_scans", unstamped)
        no_dedup = open_writer(
            whole.url_for(database), cluster=CLUSTER, settings={"insert_deduplicate": 0}
        )
        try:
            again = _stamped(_scans(2000, communities, "d"))
            no_dedup.write("gate_scans", again)
            no_dedup.write("gate_scans", again)
        finally:
            no_dedup.close()
        assert _dropped_blocks(whole) == dropped
        sync_replicas(distributed)
        assert _counts(distributed, "gate_scans", where="event_id LIKE 'c-%%'") == (4000, 2000)
        assert _counts(distributed, "gate_scans", where="event_id LIKE 'd-%%'") == (4000, 2000)
    finally:
        first.close()
        second.close()
        distributed.close()


def test_sharded_by_county_a_county_lives_on_one_shard(whole: ClickHouseCluster) -> None:
    """FANGXIAN_CLICKHOUSE_SHARD_BY=county: every community of a county on one shard (and its
    replicas), through Distributed tables and per shard alike; by community (the default) the
    same county's communities spread over both shards (the control)."""
    counties = ["350100", "350102", "350103", "350104", "350105", "350111"]
    communities = [community_code(county, n) for county in counties for n in range(1, 5)]
    placed: dict[str, dict[str, set[int]]] = {}
    for shard_by in ("county", "community"):
        database = unique_name("cl_")
        distributed = open_writer(whole.url_for(database), cluster=CLUSTER, shard_by=shard_by)
        sharded = ShardedWriter(
            open_writer(whole.url_for(database), cluster=CLUSTER, shard_by=shard_by)
        )
        try:
            migrate(distributed, retention_days=RETENTION_DAYS)
            distributed.write("gate_scans", _stamped(_scans(480, communities, "d")))
            sharded.write("gate_scans", _stamped(_scans(480, communities, "s")))
            by_county: dict[str, set[int]] = {}
            for node in whole.nodes:
                for (community,) in _on_node(
                    whole,
                    node.name,
                    f"SELECT DISTINCT community_id FROM {database}.gate_scans_local",
                ):
                    by_county.setdefault(str(community)[2:8], set()).add(node.shard)
                    assert sharded.shard_of(str(community)) == node.shard
            placed[shard_by] = by_county
        finally:
            distributed.close()
            sharded.close()
    assert all(len(shards) == 1 for shards in placed["county"].values())
    assert {s for shards in placed["county"].values() for s in shards} == {1, 2}
    assert any(len(shards) == 2 for shards in placed["community"].values())  # control


# --- nodes dying under the running worker -------------------------------------------------------


def _simulated() -> tuple[CommunitySimulator, list[Any]]:
    """~2,900 events of four communities (on both shards) in yesterday's morning peak."""
    zone = ZoneInfo(TIMEZONE)
    start = dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time(7, 30), zone)
    sim = CommunitySimulator(
        community_count=4,
        residents_per_community=60,
        seed=21,
        pseudonymiser_key=b"test-key",
        start_ms=int(start.timestamp() * 1000),
    )
    return sim, list(sim.events(600, 2.0))


def _produce(settings: Settings, sim: CommunitySimulator | None, events: list[Any]) -> None:
    producer = RecordProducer(settings)
    if sim is not None:
        load_reference(producer, sim)
    for name, event in events:
        producer.send(name, event)
    producer.close()


class PacedProducer(threading.Thread):
    """Produces ``events`` at about ``rate`` per second in the background, so the sink is
    inserting when a node dies."""

    def __init__(self, settings: Settings, events: list[Any], rate: float) -> None:
        super().__init__(daemon=True)
        self._settings, self._events, self._rate = settings, events, rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = RecordProducer(self._settings)
            began, step = time.monotonic(), 50
            for i in range(0, len(self._events), step):
                for name, event in self._events[i : i + step]:
                    producer.send(name, event)
                producer.flush()
                time.sleep(max(0.0, began + (i + step) / self._rate - time.monotonic()))
            producer.close()
        except BaseException as err:  # re-raised by the test
            self.error = err


def _expected(events: list[Any]) -> Counter[str]:
    return Counter(EVENT_TABLES[name] for name, _ in events)


def _all_written(expected: Counter[str]) -> Any:
    return lambda runtime: all(rows_written(runtime, t) >= n for t, n in expected.items())


def _total_written(runtime: Any) -> float:
    return sum(rows_written(runtime, t) for t in (*TABLES, "dead_letters"))


def _check_exact(
    cluster: ClickHouseCluster, writer: Connection, expected: Counter[str], alert_ids: set[str]
) -> dict[str, tuple[int, int]]:
    sync_replicas(writer)
    found = {t: _counts(writer, t) for t in TABLES}
    for table, n in expected.items():
        assert found[table] == (n, n), table
    assert found["gate_decisions"] == (expected["gate_scans"], expected["gate_scans"])
    assert found["alerts"] == (len(alert_ids), len(alert_ids))
    for table in TABLES:  # every replica holds its shard's rows, the returned one too
        per_node = _replica_counts(cluster, writer.database, table)
        assert per_node["s1r1"] == per_node["s1r2"] and per_node["s2r1"] == per_node["s2r2"]
        assert sum(per_node.values()) == 2 * found[table][0]
    return found


@pytest.mark.parametrize("insert", MODES)
def test_one_replica_killed_the_sink_carries_on_through_the_other(
    whole: ClickHouseCluster, topics: Settings, insert: str
) -> None:
    database = unique_name("cl_")
    settings = topics.replace(
        clickhouse_url=whole.url_for(database),
        clickhouse_cluster=CLUSTER,
        clickhouse_insert=insert,
        sink_flush_s=0.2,
        retention_days=RETENTION_DAYS,
    )
    sim, events = _simulated()
    _produce(settings, sim, [])  # the reference data
    expected = _expected(events)
    producer = PacedProducer(settings, events, rate=EVENTS_PER_S)
    state: dict[str, Any] = {"phase": "start"}

    async def kill_one(runtime: Any) -> None:
        if state["phase"] == "start":
            producer.start()
            state["phase"] = "flowing"
        elif state["phase"] == "flowing" and (
            rows_written(runtime, "gate_scans") >= expected["gate_scans"] / 4
        ):
            # best effort: while an insert is on its way (the sink inserts every 0.2 s)
            stage = runtime.sink.stage
            deadline = time.monotonic() + 1.0
            while not stage._inserting and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            writer = runtime.writer
            # the replica the sink is writing through right now
            host = writer.current_host(1) if insert == "shards" else writer.current_host()
            node = _node_at(whole, host)
            state["others"] = [n.name for n in whole.nodes if n.name != node.name]
            state["dropped_before"] = _dropped_blocks(whole, state["others"])
            whole.kill(node.name)
            state.update(
                phase="down",
                node=node.name,
                killed_at=time.monotonic(),
                written_at_kill=_total_written(runtime),
                retries_at_kill=runtime.metrics.sink_retries._value.get(),
            )
        elif state["phase"] == "down" and _all_written(expected)(runtime):
            state["all_written_after_s"] = time.monotonic() - state["killed_at"]
            state["written_while_down"] = _total_written(runtime) - state["written_at_kill"]
            state["retries"] = runtime.metrics.sink_retries._value.get() - state["retries_at_kill"]
            state["dropped"] = _dropped_blocks(whole, state["others"]) - state["dropped_before"]
            check = _writer(whole, database)
            try:
                state["scans_while_down"] = _counts(check, "gate_scans")
            finally:
                check.close()
            whole.start_replica(state["node"])  # main thread (the event loop's)
            state["phase"] = "up"

    _, run = asyncio.run(
        run_pipeline_until(
            settings, lambda rt, r: state["phase"] == "up", timeout_s=120, during=kill_one
        )
    )
    producer.join(timeout=30)
    assert producer.error is None
    # the sink wrote the rest while the replica was dead
    assert state["written_while_down"] >= sum(expected.values()) / 2
    alert_ids = {a["alert_id"] for a in run.rows("alerts")}
    writer = _writer(whole, database)
    try:
        found = _check_exact(whole, writer, expected, alert_ids)
    finally:
        writer.close()
    print(
        f"\n[{insert}] killed {state['node']} (the sink's replica) after "
        f"{state['written_at_kill']:.0f} rows; all {sum(expected.values())} events in "
        f"{state['all_written_after_s']:.1f} s with it dead ({state['written_while_down']:.0f} "
        f"rows written meanwhile, {state['retries']:.0f} insert retries); gate_scans readable "
        f"while it was down (count, uniq): {state['scans_while_down']}; after it returned: "
        f"{found['gate_scans']} of {expected['gate_scans']} sent; retried blocks dropped as "
        f"duplicates meanwhile: {state['dropped']}"
    )


def test_control_a_sink_with_only_the_killed_node_cannot_write(whole: ClickHouseCluster) -> None:
    database = unique_name("cl_")
    setup = _writer(whole, database)
    try:
        migrate(setup, retention_days=RETENTION_DAYS)
    finally:
        setup.close()
    communities = [community_code("110105", i) for i in range(1, 5)]
    only_s1r1 = open_writer(whole.url_for(database, ["s1r1"]), cluster=CLUSTER)
    failover = open_writer(whole.url_for(database, ["s1r1", "s2r1"]), cluster=CLUSTER)
    try:
        only_s1r1.write("gate_scans", _scans(100, communities, "before"))
        failover.write("gate_scans", _scans(100, communities, "before"))  # (a retry: dropped)
        whole.kill("s1r1")
        batch = _scans(100, communities, "down")
        with pytest.raises(SinkUnavailable):
            only_s1r1.write("gate_scans", batch)  # the sink would wait and retry here
        failover.write("gate_scans", batch)
        assert _counts(failover, "gate_scans")[1] == 200
    finally:
        only_s1r1.close()
        failover.close()


def test_a_whole_shard_down_pauses_only_the_sink_and_loses_nothing(
    whole: ClickHouseCluster, topics: Settings
) -> None:
    database = unique_name("cl_")
    settings = topics.replace(
        clickhouse_url=whole.url_for(database),
        clickhouse_cluster=CLUSTER,
        sink_flush_s=0.2,
        sink_max_buffered_rows=300,  # the sink's own backpressure shows within the outage
        retention_days=RETENTION_DAYS,
    )
    sim, events = _simulated()
    _produce(settings, sim, [])
    expected = _expected(events)
    producer = PacedProducer(settings, events, rate=EVENTS_PER_S)
    shard, outage_s = 2, 8.0
    survivors = [n.name for n in whole.nodes if n.shard != shard]
    state: dict[str, Any] = {"phase": "start", "dropped_before": _dropped_blocks(whole, survivors)}

    def decisions() -> int:
        return len(state["run"].rows("gate_decisions"))

    async def shard_down(runtime: Any) -> None:
        if state["phase"] == "start":
            producer.start()
            state["phase"] = "flowing"
        elif state["phase"] == "flowing" and (
            rows_written(runtime, "gate_scans") >= expected["gate_scans"] / 4
        ):
            for node in whole.shard_nodes(shard):
                whole.kill(node.name)
            state.update(
                phase="down",
                killed_at=time.monotonic(),
                decisions_at_kill=decisions(),
                retries_at_kill=runtime.metrics.sink_retries._value.get(),
            )
        elif state["phase"] == "down":
            down_for = time.monotonic() - state["killed_at"]
            if down_for > 1.5 and "written_settled" not in state:
                state["written_settled"] = _total_written(runtime)  # an insert under way ends
            if runtime.metrics.consumer_paused._value.get() == 1:
                state["paused_seen"] = True
            if down_for < outage_s:
                return
            state["written_at_end"] = _total_written(runtime)
            state["decided_while_down"] = decisions() - state["decisions_at_kill"]
            state["retries"] = runtime.metrics.sink_retries._value.get() - state["retries_at_kill"]
            check = _writer(whole, database)
            try:  # control: the cluster lacks the dead shard's rows
                ((seen,),) = check.query(
                    f"SELECT uniqExact(event_id) FROM {database}.gate_scans"
                    " SETTINGS skip_unavailable_shards = 1"
                )
                state["scans_readable_while_down"] = int(seen)
            finally:
                check.close()
            for node in whole.shard_nodes(shard):
                whole.start_replica(node.name)
            state["back_at"] = time.monotonic()
            state["phase"] = "up"
        elif state["phase"] == "up" and _all_written(expected)(runtime):
            state["caught_up_after_s"] = time.monotonic() - state["back_at"]
            state["phase"] = "done"

    def done(runtime: Any, run: Any) -> bool:
        state["run"] = run
        return state["phase"] == "done"

    _, run = asyncio.run(run_pipeline_until(settings, done, timeout_s=150, during=shard_down))
    producer.join(timeout=30)
    assert producer.error is None
    # decisions never waited: the decide stage went on deciding while the sink could not write
    assert state["decided_while_down"] > 0
    assert state["written_at_end"] == state["written_settled"]  # the sink wrote nothing
    assert state["retries"] > 0 and state.get("paused_seen")  # it waited, and paused itself
    assert state["scans_readable_while_down"] < expected["gate_scans"]  # control
    alert_ids = {a["alert_id"] for a in run.rows("alerts")}
    writer = _writer(whole, database)
    try:
        found = _check_exact(whole, writer, expected, alert_ids)
    finally:
        writer.close()
    print(
        f"\n[shard {shard} down {outage_s:.0f} s] decided meanwhile: "
        f"{state['decided_while_down']}; sink rows written meanwhile: "
        f"{state['written_at_end'] - state['written_settled']:.0f} ({state['retries']:.0f} "
        f"retries, consumption paused); gate_scans readable while down: "
        f"{state['scans_readable_while_down']} of {expected['gate_scans']}; caught up "
        f"{state['caught_up_after_s']:.1f} s after the shard returned; after: "
        f"{found['gate_scans']}; retried blocks the live shard dropped as duplicates: "
        f"{_dropped_blocks(whole, survivors) - state['dropped_before']}"
    )


# --- the read side on the cluster equals one server ---------------------------------------------


def _with_community_on_the_other_shard(scenario: Scenario, community: str) -> Scenario:
    """The scenario plus a copy of community A's day under ``community`` (same county, same
    subjects, new ids): the county's distinct figures must union the two shards' sets."""

    def copy(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        return [
            {**r, key: f"{r[key]}-x", "community_id": community}
            for r in rows
            if r["community_id"] == COMMUNITY_A
        ]

    # an overdue alert names the day it is overdue for, as the worker's do (bi_reports_daily)
    alerts = [
        {**a, "details": {"date": DAY.isoformat()}} if a["alert_type"] == "REPORT_OVERDUE" else a
        for a in scenario.alerts
    ]
    return Scenario(
        scans=[*scenario.scans, *copy(scenario.scans, "event_id")],
        readings=[*scenario.readings, *copy(scenario.readings, "event_id")],
        reports=[*scenario.reports, *copy(scenario.reports, "event_id")],
        decisions=[*scenario.decisions, *copy(scenario.decisions, "event_id")],
        alerts=[*alerts, *copy(alerts, "alert_id")],
    )


def _read_side(reader: Connection, communities: list[str]) -> dict[str, Any]:
    db = reader.database
    reports = {
        f"{kind} {code}": build_report(reader, Scope(kind, code), DAY, TIMEZONE).to_dict()  # type: ignore[arg-type]
        for kind, code in [
            *(("community", c) for c in communities),
            ("county", "350100"),
            ("county", "110105"),
        ]
    }
    contacts = find_contacts(reader, SUBJECT, DAY_START, DAY_END, WINDOW_MS)
    views = [
        str(name)
        for (name,) in reader.query(
            f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'bi\\_%%'"
            " ORDER BY name"
        )
    ]
    history = History(reader, TIMEZONE)
    since = DAY_START // 1000
    console = {
        "occupancy": history.occupancy(communities, since),
        "alerts": sorted(a["alert_id"] for a in history.alerts_since(communities, since)),
        **{f"gates {c}": history.decisions_by_gate(c, since) for c in communities},
        **{f"observation {c}": history.observation(c, DAY) for c in communities},
    }
    return {
        "console": console,
        "reports": reports,
        "contacts": (
            sorted((p.community_id, p.gate_id, p.event_time) for p in contacts.trajectory),
            sorted((c.subject_id, c.event_time) for c in contacts.contacts),
        ),
        "views": {v: sorted(map(tuple, reader.query(f"SELECT * FROM {db}.{v}"))) for v in views},
        "readback": {t: read_contract_rows(reader, t) for t in TABLES},
    }


def test_reports_contacts_views_and_forget_on_the_cluster_equal_one_server(
    merging_cluster: ClickHouseCluster, clickhouse_url: str
) -> None:
    whole = merging_cluster
    other = community_code("350100", 3)
    scenario = _with_community_on_the_other_shard(build_scenario(), other)
    communities = sorted({s["community_id"] for s in scenario.scans})
    single = open_writer(clickhouse_url)
    clustered = _writer(whole, unique_name("cl_"), insert="shards")
    try:
        for writer in (single, clustered):
            migrate(writer, retention_days=RETENTION_DAYS)
            write_scenario(writer, scenario)
            write_scenario(writer, scenario)  # redelivered: every figure stays
        assert isinstance(clustered, ShardedWriter)
        shards = {clustered.shard_of(c) for c in (COMMUNITY_A, other)}
        assert shards == {1, 2}  # county 350100 lies on both shards
        sync_replicas(clustered)

        on_cluster, on_one = _read_side(clustered, communities), _read_side(single, communities)
        assert on_cluster["views"] and on_cluster == on_one
        county = on_cluster["reports"]["county 350100"]
        expected = expected_report(scenario, lambda c: c[2:8] == "350100")
        assert county["figures"] == expected["figures"]
        assert county["passes_by_hour"] == expected["passes_by_hour"]

        forgotten = [forget_subject(w, SUBJECT) for w in (clustered, single)]
        # the same buckets rebuilt; rows removed are raw rows, copies included, and one server
        # of 18.16 keeps the redelivered copies until a merge where the replicated tables
        # dropped them on arrival — so those counts may differ, what is left may not
        assert forgotten[0].rebuilt == forgotten[1].rebuilt
        assert all(f.removed["gate_scans"] > 0 for f in forgotten)
        sync_replicas(clustered)
        for node in whole.nodes:  # gone from every replica of every shard
            ((left,),) = _on_node(
                whole,
                node.name,
                f"SELECT count() FROM {clustered.database}.gate_scans_local"
                f" WHERE subject_id = '{SUBJECT}'",
            )
            assert left == 0, node.name
        assert _read_side(clustered, communities) == _read_side(single, communities)
    finally:
        single.close()
        clustered.close()
