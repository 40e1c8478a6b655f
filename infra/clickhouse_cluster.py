"""A ClickHouse cluster for tests: ``shards`` × ``replicas`` Debian ``clickhouse-server`` (18.16)
processes on loopback, coordinated by Apache ZooKeeper (``infra/zookeeper.py``), with what
fangxian's cluster mode needs on every node (``sinks/cluster.py``):

- ``<remote_servers>``: one cluster (``CLUSTER``), each shard ``internal_replication=true`` — an
  insert through a ``Distributed`` table goes to one replica of the shard and replication copies
  it to the others (the tables are ``Replicated*MergeTree``);
- ``<macros>``: ``{shard}`` and ``{replica}`` for the tables' ZooKeeper paths;
- ``<distributed_ddl>``: the ``ON CLUSTER`` task queue;
- ``<interserver_http_host/port>``: replicas fetch parts from each other over loopback.

Every node has free ports of its own (native, HTTP, interserver). ``kill(name)`` is a ``kill -9``
of one node (its data stays), ``start_replica(name)`` brings it back on the same ports and data;
``stop()`` ends every node and ZooKeeper and deletes their data.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from infra.clickhouse_server import config_xml, find_clickhouse_server, users_xml
from infra.ports import LOOPBACK, free_port, port_is_open
from infra.process import Service, spawn, terminate, wait_until_ready
from infra.zookeeper import ZooKeeperServer

log = logging.getLogger(__name__)

CLUSTER = "fangxian"
DDL_QUEUE = "/clickhouse/task_queue/ddl"


@dataclass
class ClusterNode:
    """One server of the cluster: shard and replica numbers from 1, its ports and process."""

    shard: int
    replica: int
    tcp_port: int = 0
    http_port: int = 0
    interserver_port: int = 0
    data_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """``s1r2``: shard 1, replica 2 (also its ``{replica}`` macro)."""
        return f"s{self.shard}r{self.replica}"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.tcp_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise RuntimeError(f"node {self.name} has no data dir")
        return self.data_dir / "clickhouse-server.log"


def remote_servers_xml(cluster: str, nodes: Sequence[ClusterNode]) -> str:
    """``<remote_servers>`` with one cluster: a ``<shard>`` per shard number (weight 1,
    ``internal_replication``), its nodes as replicas."""
    shards: dict[int, list[ClusterNode]] = {}
    for node in nodes:
        shards.setdefault(node.shard, []).append(node)
    parts = []
    for shard in sorted(shards):
        replicas = "".join(
            f"<replica><host>{LOOPBACK}</host><port>{n.tcp_port}</port></replica>"
            for n in sorted(shards[shard], key=lambda n: n.replica)
        )
        parts.append(
            "<shard><weight>1</weight><internal_replication>true</internal_replication>"
            f"{replicas}</shard>"
        )
    return f"  <remote_servers><{cluster}>{''.join(parts)}</{cluster}></remote_servers>\n"


def cluster_xml(
    node: ClusterNode, nodes: Sequence[ClusterNode], *, cluster: str, zookeeper: tuple[str, int]
) -> str:
    """The cluster part of one node's config (``config_xml``'s ``extra``)."""
    zk_host, zk_port = zookeeper
    return (
        f"  <interserver_http_host>{LOOPBACK}</interserver_http_host>\n"
        f"  <interserver_http_port>{node.interserver_port}</interserver_http_port>\n"
        f"  <zookeeper><node><host>{escape(zk_host)}</host><port>{zk_port}</port></node>"
        "<session_timeout_ms>6000</session_timeout_ms></zookeeper>\n"
        f"  <macros><shard>{node.shard:02d}</shard><replica>{node.name}</replica>"
        f"<cluster>{escape(cluster)}</cluster></macros>\n"
        + remote_servers_xml(cluster, nodes)
        + f"  <distributed_ddl><path>{DDL_QUEUE}</path></distributed_ddl>\n"
    )


class ClickHouseCluster(Service):
    """``shards`` × ``replicas`` ClickHouse servers and a ZooKeeper, on loopback.

    >>> with ClickHouseCluster() as cluster:
    ...     url = cluster.url_for("fangxian")  # every node, for failover
    ...     cluster.kill("s1r1"); ...; cluster.start_replica("s1r1")
    """

    def __init__(
        self,
        *,
        shards: int = 2,
        replicas: int = 2,
        cluster: str = CLUSTER,
        command: list[str] | None = None,
        start_timeout_s: float = 60.0,
        log_level: str = "warning",
        merges: bool = True,
    ) -> None:
        self.cluster = cluster
        # merges=False: no background merge ever starts (no part is small enough to pick), so
        # a row inserted twice stays twice — ReplacingMergeTree cannot hide a doubled insert
        # from a test that counts rows
        self.merges = merges
        self.nodes = [
            ClusterNode(shard, replica)
            for shard in range(1, shards + 1)
            for replica in range(1, replicas + 1)
        ]
        self.zookeeper = ZooKeeperServer()
        self._command = command
        self._start_timeout_s = start_timeout_s
        self._log_level = log_level
        self._root: Path | None = None
        self.version = ""
        self.start_seconds = 0.0

    # -- addresses -------------------------------------------------------------------------
    def node(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r}; nodes: {[n.name for n in self.nodes]}")

    def shard_nodes(self, shard: int) -> list[ClusterNode]:
        return [n for n in self.nodes if n.shard == shard]

    @property
    def shard_count(self) -> int:
        return max(n.shard for n in self.nodes)

    def url_for(self, database: str, nodes: Sequence[str] | None = None) -> str:
        """``clickhouse://default@h:p1,h:p2,…/database``: the ``default`` user on the named
        nodes (all by default), the first tried first and the others for failover."""
        chosen = [self.node(n) for n in nodes] if nodes else self.nodes
        hosts = ",".join(n.address for n in chosen)
        return f"clickhouse://default@{hosts}/{database}"

    def client(self, name: str, database: str = "default") -> Client:
        """A clickhouse-driver client to one node (the caller disconnects it)."""
        node = self.node(name)
        return Client(
            LOOPBACK, port=node.tcp_port, user="default", database=database, connect_timeout=2
        )

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> ClickHouseCluster:
        began = time.monotonic()
        command = self._command or find_clickhouse_server()
        self._root = Path(tempfile.mkdtemp(prefix="fangxian-chcluster-"))
        try:
            self.zookeeper.start()
            taken: set[int] = set()
            for node in self.nodes:
                node.tcp_port, node.http_port, node.interserver_port = _free_ports(3, taken)
                node.data_dir = self._root / node.name
                node.data_dir.mkdir()
            for node in self.nodes:
                self._write_config(node)
                node.proc = self._spawn(command, node)
            for node in self.nodes:
                self._wait(node)
            self.version = self._query_version(self.nodes[0])
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        log.info(
            "ClickHouse cluster %s (%d shards × %d replicas, %s) ready in %.1f s",
            self.cluster,
            self.shard_count,
            len(self.shard_nodes(1)),
            self.version,
            self.start_seconds,
        )
        return self

    def kill(self, name: str) -> None:
        """``kill -9`` one node: no shutdown, its data stays for ``start_replica``."""
        node = self.node(name)
        if node.proc is None:
            raise RuntimeError(f"node {name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait()
        node.proc = None
        log.info("ClickHouse node %s killed (kill -9)", name)

    def start_replica(self, name: str) -> float:
        """Start a killed node again on its ports and data; the seconds until it answered."""
        node = self.node(name)
        if node.proc is not None:
            raise RuntimeError(f"node {name} is running")
        began = time.monotonic()
        node.proc = self._spawn(self._command or find_clickhouse_server(), node)
        self._wait(node)
        log.info("ClickHouse node %s back in %.1f s", name, time.monotonic() - began)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop every node and ZooKeeper and delete their data. Safe to call twice."""
        # the data goes too, so nothing needs a clean shutdown (18.16 takes seconds per node
        # to close its ZooKeeper session and tables): SIGKILL every node at once
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
        for node in self.nodes:
            if node.proc is not None:
                terminate(node.proc, what=f"ClickHouse node {node.name}", grace_s=5)
                node.proc = None
        self.zookeeper.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # -- helpers ---------------------------------------------------------------------------
    def _write_config(self, node: ClusterNode) -> None:
        assert node.data_dir is not None
        extra = cluster_xml(
            node, self.nodes, cluster=self.cluster, zookeeper=self.zookeeper.address
        )
        if not self.merges:
            extra += (
                "  <merge_tree><max_bytes_to_merge_at_max_space_in_pool>1"
                "</max_bytes_to_merge_at_max_space_in_pool></merge_tree>\n"
            )
        (node.data_dir / "config.xml").write_text(
            config_xml(
                data_dir=node.data_dir,
                tcp_port=node.tcp_port,
                http_port=node.http_port,
                log_level=self._log_level,
                extra=extra,
            ),
            encoding="utf-8",
        )
        (node.data_dir / "users.xml").write_text(users_xml(), encoding="utf-8")

    def _spawn(self, command: list[str], node: ClusterNode) -> subprocess.Popen[bytes]:
        assert node.data_dir is not None
        config = node.data_dir / "config.xml"
        return spawn(
            [*command, f"--config-file={config}"], log_path=node.log_path, cwd=node.data_dir
        )

    def _wait(self, node: ClusterNode) -> None:
        assert node.proc is not None
        wait_until_ready(
            lambda: _answers(node),
            proc=node.proc,
            what=f"ClickHouse node {node.name}",
            log_path=node.log_path,
            timeout_s=self._start_timeout_s,
        )

    def _query_version(self, node: ClusterNode) -> str:
        client = self.client(node.name)
        try:
            return str(client.execute("SELECT version()")[0][0])
        finally:
            client.disconnect()


def _free_ports(count: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports


def _answers(node: ClusterNode) -> bool:
    if not port_is_open(node.tcp_port):
        return False
    client = Client(LOOPBACK, port=node.tcp_port, user="default", connect_timeout=1)
    try:
        return bool(client.execute("SELECT 1") == [(1,)])
    except (ClickHouseError, OSError, EOFError):
        return False
    finally:
        client.disconnect()
