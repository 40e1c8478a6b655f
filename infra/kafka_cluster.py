"""Apache Kafka as a 3-node KRaft cluster on loopback, for tests that kill a broker.

Each node is a combined broker + controller (``process.roles=broker,controller``) with its own
ports, log dir and process, from the same jars as ``infra.kafka_broker`` (``infra/kafka/
fetch.sh``). The three controllers are the static voter set (``controller.quorum.voters``), so
the metadata quorum survives one node. The cluster is configured the way a production cluster
of three is (docs/deploy.md): ``default.replication.factor=3``, ``min.insync.replicas=2``, and
the internal topics — consumer offsets, the transaction state log — replicated 3 with 2 in
sync, so a dead node takes neither the group coordinator nor the transaction coordinator with
it. PLAINTEXT only: the security tests use ``KafkaBroker(security=...)``.

>>> with KafkaCluster() as cluster:
...     cluster.kill(2)      # SIGKILL, as a crashed machine
...     cluster.start(2)     # on the same data and ports: it rejoins and catches up
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from infra.kafka_broker import (
    JVM_OPTIONS,
    TEST_BROKER_PROPERTIES,
    broker_answers,
    fetch_kafka_lib,
    log4j2_properties,
    new_cluster_id,
    render_properties,
)
from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, ServiceStartError, spawn, terminate, wait_until_ready

log = logging.getLogger(__name__)
T = TypeVar("T")

NODES = 3

# What makes three nodes a cluster that survives one of them; the rest of
# TEST_BROKER_PROPERTIES (small internal topics, no auto-creation) still applies.
CLUSTER_PROPERTIES: Mapping[str, str] = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    # a node that was down becomes leader of its partitions again once back in sync
    "auto.leader.rebalance.enable": "true",
    "leader.imbalance.check.interval.seconds": "10",
}


class KafkaCluster(Service):
    """``nodes`` Kafka nodes (broker + controller each) on free loopback ports, in a temp dir
    removed by ``stop()``. ``bootstrap`` lists every node; ``kill(node)`` / ``start(node)``
    take one node (1-based id) down hard and back."""

    def __init__(
        self,
        nodes: int = NODES,
        *,
        lib_dir: Path | None = None,
        heap: str = "512m",
        overrides: Mapping[str, str] | None = None,
        start_timeout_s: float = 120.0,
        log_level: str = "INFO",
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.node_ids = list(range(1, nodes + 1))
        self._lib_dir = lib_dir
        self._heap = heap
        self._overrides = dict(overrides or {})
        self._start_timeout_s = start_timeout_s
        self._log_level = log_level
        self._root: Path | None = None
        self._java: list[str] = []
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self.ports: dict[int, int] = {}
        self.controller_ports: dict[int, int] = {}
        self.start_seconds = 0.0

    # -- addresses -----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every node, comma-separated (``Settings.kafka_bootstrap``): a client that starts while
        one node is down still finds the cluster."""
        if self._root is None:
            raise RuntimeError("KafkaCluster is not started")
        return ",".join(self.bootstrap_of(node) for node in self.node_ids)

    def bootstrap_of(self, node: int) -> str:
        return f"{LOOPBACK}:{self.ports[node]}"

    def node_dir(self, node: int) -> Path:
        if self._root is None:
            raise RuntimeError("KafkaCluster is not started")
        return self._root / f"node-{node}"

    def log_path(self, node: int) -> Path:
        return self.node_dir(node) / "kafka.log"

    def running(self, node: int) -> bool:
        proc = self._procs.get(node)
        return proc is not None and proc.poll() is None

    def properties(self, node: int) -> dict[str, str]:
        """server.properties of ``node``."""
        voters = ",".join(f"{n}@{LOOPBACK}:{self.controller_ports[n]}" for n in self.node_ids)
        port, controller = self.ports[node], self.controller_ports[node]
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.node_dir(node) / "kraft-logs"),
            **TEST_BROKER_PROPERTIES,
            **CLUSTER_PROPERTIES,
            # the cluster is small: fewer threads per node than the single test broker
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        props.update(self._overrides)
        return props

    # -- the whole cluster ---------------------------------------------------------------------

    def start(self, node: int | None = None) -> KafkaCluster:
        """Start the cluster (``node`` None), or bring one killed node back on its data."""
        if node is not None:
            self._restart(node)
            return self
        if self._root is not None:
            raise RuntimeError("KafkaCluster is already started")
        began = time.monotonic()
        lib = self._lib_dir or fetch_kafka_lib()
        self._root = Path(tempfile.mkdtemp(prefix="fangxian-kafka-cluster-"))
        try:
            taken: set[int] = set()
            while len(taken) < 2 * len(self.node_ids):
                taken.add(free_port())
            ports = sorted(taken)
            for i, n in enumerate(self.node_ids):
                self.ports[n], self.controller_ports[n] = ports[2 * i], ports[2 * i + 1]
            log4j = self._root / "log4j2.properties"
            log4j.write_text(log4j2_properties(self._log_level), encoding="utf-8")
            self._java = [
                "java",
                f"-Xmx{self._heap}",
                f"-Xms{self._heap}",
                *JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                str(lib / "*"),
            ]
            self._format_all(new_cluster_id())
            for n in self.node_ids:
                self._procs[n] = self._spawn(n)
            for n in self.node_ids:
                self._wait_ready(n, "Kafka cluster node")
            self._wait_for_brokers(len(self.node_ids), self._start_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info(
            "Kafka cluster of %d nodes ready on %s in %.1f s",
            len(self.node_ids),
            self.bootstrap,
            self.start_seconds,
        )
        return self

    def _format_all(self, cluster_id: str) -> None:
        """``StorageTool format`` of every node, in parallel (one JVM start each)."""
        running: list[tuple[int, subprocess.Popen[str]]] = []
        for n in self.node_ids:
            home = self.node_dir(n)
            home.mkdir(parents=True)
            props = home / "server.properties"
            props.write_text(render_properties(self.properties(n)), encoding="utf-8")
            argv = [*self._java, "kafka.tools.StorageTool", "format"]
            argv += [f"--cluster-id={cluster_id}", "-c", str(props)]
            running.append(
                (
                    n,
                    subprocess.Popen(
                        argv,
                        cwd=home,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    ),
                )
            )
        for n, proc in running:
            out, _ = proc.communicate(timeout=self._start_timeout_s)
            if proc.returncode != 0:
                raise ServiceStartError(
                    f"kafka StorageTool format of node {n} failed ({proc.returncode}): "
                    f"{out.strip()[-2000:]}"
                )

    def _spawn(self, node: int) -> subprocess.Popen[bytes]:
        home = self.node_dir(node)
        return spawn(
            [*self._java, "kafka.Kafka", str(home / "server.properties")],
            log_path=home / "kafka.log",
            cwd=home,
        )

    def _wait_ready(self, node: int, what: str) -> None:
        address = self.bootstrap_of(node)
        wait_until_ready(
            lambda: port_is_open(self.ports[node]) and broker_answers(address),
            proc=self._procs[node],
            what=f"{what} {node}",
            log_path=self.log_path(node),
            timeout_s=self._start_timeout_s,
            interval_s=0.25,
        )

    def admin(self, **client: Any) -> KafkaAdminClient:
        """An admin client on every node (the caller closes it)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": "fangxian-cluster",
            "request_timeout_ms": 10_000,
            "reconnect_backoff_max_ms": 1000,
            **client,
        }
        return KafkaAdminClient(**options)

    def ask(self, question: Callable[[KafkaAdminClient], T], attempts: int = 20) -> T:
        """``question`` on an admin client of the running nodes, asked again when it went to a
        node that is down (until the controller fences a killed node, the metadata still lists
        it and the client may pick it)."""
        for attempt in range(attempts):
            running = [self.bootstrap_of(n) for n in self.node_ids if self.running(n)]
            try:
                admin = self.admin(bootstrap_servers=",".join(running))
                try:
                    return question(admin)
                finally:
                    admin.close()
            except (KafkaError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def registered_brokers(self) -> list[int]:
        """The broker ids DescribeCluster lists: every broker that registered, a killed one
        too (whether a node is serving shows in ``partitions``: leaders and ISRs)."""
        return self.ask(
            lambda admin: sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"])
        )

    def _wait_for_brokers(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            last: Exception | None = None
            try:
                live = self.registered_brokers()
            except Exception as err:  # a node still starting: ask again
                live, last = [], err
            if len(live) >= count:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(str(self.log_path(n)) for n in self.node_ids)
                raise ServiceStartError(
                    f"Kafka cluster: {len(live)} of {count} brokers registered after "
                    f"{timeout_s:.0f} s ({last!r}); logs:\n{tails}"
                )
            time.sleep(0.5)

    # -- one node ------------------------------------------------------------------------------

    def kill(self, node: int) -> None:
        """SIGKILL ``node``'s process group (no controlled shutdown: its leaderships move only
        when the controller notices it is gone)."""
        proc = self._procs.get(node)
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"node {node} is not running")
        proc.kill()
        proc.wait()
        log.info("Kafka node %d killed (SIGKILL)", node)

    def _restart(self, node: int) -> None:
        if self._root is None:
            raise RuntimeError("KafkaCluster is not started")
        if self.running(node):
            raise RuntimeError(f"node {node} is running")
        self._procs[node] = self._spawn(node)
        self._wait_ready(node, "Kafka cluster node (restart)")
        log.info("Kafka node %d started again on its data", node)

    def partitions(self, topics: Sequence[str]) -> dict[tuple[str, int], dict[str, Any]]:
        """(topic, partition) -> leader, replicas, isr as the metadata has them now."""
        found = self.ask(lambda admin: admin.describe_topics(list(topics)))
        return {
            (t["name"], p["partition_index"]): {
                "leader": p["leader_id"],
                "replicas": sorted(p["replica_nodes"]),
                "isr": sorted(p["isr_nodes"]),
            }
            for t in found
            for p in t.get("partitions") or []
        }

    def wait_in_sync(self, topics: Sequence[str], timeout_s: float = 60.0) -> float:
        """Wait until every partition of ``topics`` has all its replicas in sync; return the
        seconds waited."""
        began = time.monotonic()
        while True:
            try:
                state = self.partitions(topics)
            except Exception:  # metadata from a node that is still starting
                state = {}
            if state and all(p["isr"] == p["replicas"] for p in state.values()):
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                behind = {k: v for k, v in state.items() if v["isr"] != v["replicas"]}
                raise AssertionError(f"not in sync within {timeout_s:.0f} s: {behind}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and delete the data. Safe to call twice."""
        for proc in self._procs.values():  # all at once: a node shutting down alone waits
            if proc.poll() is None:  # for the others to take its leaderships
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for node, proc in sorted(self._procs.items()):
            grace = max(0.1, deadline - time.monotonic())
            code = terminate(proc, what=f"Kafka cluster node {node}", grace_s=grace)
            log.info("Kafka cluster node %d stopped (exit %s)", node, code)
        self._procs.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
