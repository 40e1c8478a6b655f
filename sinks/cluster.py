"""ClickHouse as a cluster: shards of replicas (``FANGXIAN_CLICKHOUSE_CLUSTER`` names the cluster
of the servers' ``<remote_servers>``; empty = one server, the migrations as written).

In cluster mode every table ``t`` of the migrations becomes two, each created ``ON CLUSTER`` on
every node:

- ``t_local``: the data, ``Replicated<engine>`` (``ReplacingMergeTree`` →
  ``ReplicatedReplacingMergeTree``, …) at ``/clickhouse/tables/{shard}/<database>/t_local`` with
  replica ``{replica}`` — the servers' macros say which shard and replica a node is;
- ``t``: a ``Distributed`` table over ``t_local``, sharded by ``cityHash64(community_id)`` (a
  community's rows, and so its reports and contact queries, live on one shard; tables without
  a community — dead letters, the audit log — by their id).

Everything that reads or writes by name — the sink, readback, reports, contacts, the console,
the BI views — uses ``t``, the ``Distributed`` table, and works unchanged. The materialised
views of the roll-ups sit on the local tables (``t_local`` → ``rollup_local``): each shard rolls
up its own communities, and a report merges the shards' uniqExact states, which is exact.
``forget`` mutates ``t_local`` on one replica of every shard (replication carries the mutation
to the others) and waits for every reachable node. ``schema_migrations`` is one replicated
table on every node (path without ``{shard}``), so any node says what is applied.

Writes go through the ``Distributed`` table with ``insert_distributed_sync = 1`` (an insert
returns once every shard has it, so the sink's offset commit still follows the rows), or, with
``FANGXIAN_CLICKHOUSE_INSERT=shards``, straight to each shard's ``t_local`` by the same key
(``ShardedWriter``). Either way a retried insert repeats the same blocks per shard, and the
replicated tables drop a block they already have (``insert_deduplicate``, block ids kept in
ZooKeeper/Keeper for all replicas of the shard, ``replicated_deduplication_window``).

Works on Debian's 18.16 (ReplicatedMergeTree, Distributed, ON CLUSTER with ZooKeeper, macros)
and on current servers (ClickHouse Keeper instead of ZooKeeper; docker-compose's ``cluster``
profile). clickhouse-driver is not imported here: the chdb path never loads it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from sinks.base import Reader, ServerTarget, Writer
from sinks.errors import SinkError, SinkUnavailable
from sinks.rows import column_names

log = logging.getLogger(__name__)

LOCAL_SUFFIX = "_local"
TABLES_PATH = "/clickhouse/tables"
SHARDING_FUNCTION = "cityHash64"
SHARDING_COLUMN = "community_id"
#: what keeps rows together on one shard (``FANGXIAN_CLICKHOUSE_SHARD_BY``, chosen at the first
#: migration): a community (``cityHash64(community_id)``), or its county — characters 3–8 of
#: the community's credit code, the GB/T 2260 county code (``cityHash64(substring(community_id,
#: 3, 6))``): a county's rows, all its communities', then live on one shard and its replicas
SHARD_BY = {
    "community": SHARDING_COLUMN,
    "county": f"substring({SHARDING_COLUMN}, 3, 6)",
}
# replicated_deduplication_window of the base tables: how many recent insert blocks per shard
# a retry is recognised against (the single server's non_replicated_deduplication_window)
_NON_REPLICATED = "non_replicated_deduplication_window"
_REPLICATED = "replicated_deduplication_window"
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# at most this many keys per cityHash64 lookup (max_query_size is 256 KiB)
_HASH_CHUNK = 500


class ClusterError(SinkError):
    """A cluster-mode statement or topology that cannot be used."""


def check_cluster_name(cluster: str) -> str:
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"not a plain cluster name: {cluster!r}")
    return cluster


def cluster_of(connection: object) -> str:
    """The cluster a connection writes to ("" for one server or chdb)."""
    return str(getattr(connection, "cluster", "") or "")


def local_name(table: str) -> str:
    return table + LOCAL_SUFFIX


# --- DDL --------------------------------------------------------------------------------------

_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<table>\w+)\n\((?P<columns>.*?)\n\)\n"
    r"(?P<rest>ENGINE = .*)$",
    re.DOTALL,
)
_ENGINE = re.compile(r"^ENGINE = (?P<kind>\w*)MergeTree\((?P<args>[^)]*)\)$", re.MULTILINE)
_MATERIALIZED_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<db>\w+)\.(?P<view>\w+) "
    r"TO (?P=db)\.(?P<target>\w+) AS\b(?P<select>.*)$",
    re.DOTALL,
)
_VIEW = re.compile(
    r"^CREATE VIEW IF NOT EXISTS (?P<db>\w+)\.(?P<view>\w+)(?P<rest>\n.*)$", re.DOTALL
)
_INSERT_SELECT = re.compile(r"^INSERT INTO \w+\.\w+\nSELECT\b", re.DOTALL)
_ALTER_COLUMNS = re.compile(
    r"^ALTER TABLE (?P<db>\w+)\.(?P<table>\w+) (?P<what>(?:ADD|DROP|MODIFY|COMMENT) COLUMN\b.*)$",
    re.DOTALL,
)


def replicated_engine(
    statement: str, *, database: str, table: str, shard_macro: bool = True
) -> str:
    """``ENGINE = XMergeTree(args)`` → ``ENGINE = ReplicatedXMergeTree('<path>', '{replica}',
    args)``; the deduplication window setting becomes the replicated one."""
    shard = "{shard}" if shard_macro else "all"
    path = f"{TABLES_PATH}/{shard}/{database}/{table}"

    def engine(match: re.Match[str]) -> str:
        args = f", {match['args']}" if match["args"].strip() else ""
        return f"ENGINE = Replicated{match['kind']}MergeTree('{path}', '{{replica}}'{args})"

    replicated, found = _ENGINE.subn(engine, statement)
    if found != 1:
        raise ClusterError(f"no MergeTree engine line to replicate in: {statement[:200]!r}")
    return replicated.replace(_NON_REPLICATED, _REPLICATED)


def sharding_key(columns: str, shard_by: str = "community") -> str:
    """``cityHash64(community_id)`` (or of its county, ``SHARD_BY``) when the table has that
    column, else of its first column (its id: a redelivered dead letter lands where its first
    copy did)."""
    names = [line.split()[0] for line in columns.strip().split("\n") if line.strip()]
    key = SHARD_BY[shard_by] if SHARDING_COLUMN in names else names[0]
    return f"{SHARDING_FUNCTION}({key})"


def shard_key_value(community_id: str, shard_by: str) -> str:
    """What ``SHARD_BY[shard_by]`` evaluates to for a community (an ASCII credit code, so
    ClickHouse's byte ``substring`` and Python's slice agree)."""
    return community_id[2:8] if shard_by == "county" else community_id


def adapt_for_cluster(
    statement: str, *, cluster: str, database: str, shard_by: str = "community"
) -> list[str]:
    """One rendered migration statement (``{database}`` filled in) as the statements of cluster
    mode (module doc). Raises ``ClusterError`` for a statement it has no rule for, so a new kind
    of migration cannot silently create a table on one node only."""
    check_cluster_name(cluster)
    if shard_by not in SHARD_BY:
        raise ValueError(f"shard_by must be one of {sorted(SHARD_BY)}, not {shard_by!r}")
    on = f"ON CLUSTER {cluster}"
    if table := _CREATE_TABLE.match(statement):
        db, name = table["db"], table["table"]
        local = local_name(name)
        rest = replicated_engine(table["rest"], database=db, table=local)
        return [
            f"CREATE TABLE IF NOT EXISTS {db}.{local} {on}\n({table['columns']}\n)\n{rest}",
            f"CREATE TABLE IF NOT EXISTS {db}.{name} {on} AS {db}.{local}\n"
            f"ENGINE = Distributed({cluster}, {db}, {local}, "
            f"{sharding_key(table['columns'], shard_by)})",
        ]
    if view := _MATERIALIZED_VIEW.match(statement):
        db = view["db"]
        select = re.sub(
            rf"\bFROM {db}\.(\w+)\b", lambda m: f"FROM {db}.{local_name(m[1])}", view["select"]
        )
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view['view']} {on} "
            f"TO {db}.{local_name(view['target'])} AS{select}"
        ]
    if view := _VIEW.match(statement):
        return [f"CREATE VIEW IF NOT EXISTS {view['db']}.{view['view']} {on}{view['rest']}"]
    if _INSERT_SELECT.match(statement):
        return [statement]  # Distributed to Distributed: rows land on their community's shard
    if alter := _ALTER_COLUMNS.match(statement):
        db, name, what = alter["db"], alter["table"], alter["what"]
        return [
            f"ALTER TABLE {db}.{local_name(name)} {on} {what}",
            f"ALTER TABLE {db}.{name} {on} {what}",
        ]
    raise ClusterError(
        f"no cluster-mode rule for this migration statement (sinks/cluster.py): {statement[:120]!r}"
    )


def replicated_everywhere(statement: str, *, cluster: str, database: str) -> str:
    """A ``CREATE TABLE`` as one replicated table on every node (one ZooKeeper path for all
    shards, no Distributed table): the migrations' bookkeeping."""
    table = _CREATE_TABLE.match(statement)
    if table is None:
        raise ClusterError(f"not a CREATE TABLE: {statement[:120]!r}")
    rest = replicated_engine(
        table["rest"], database=database, table=table["table"], shard_macro=False
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {table['db']}.{table['table']} ON CLUSTER "
        f"{check_cluster_name(cluster)}\n({table['columns']}\n)\n{rest}"
    )


# --- topology ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    shard: int
    replica: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Shard:
    number: int  # system.clusters shard_num, from 1
    weight: int
    replicas: tuple[Replica, ...]


def topology(reader: Reader, cluster: str) -> list[Shard]:
    """The cluster's shards and replicas as the connected server's ``system.clusters`` has them
    (host names as configured, so they resolve where the servers' own names do)."""
    rows = reader.query(
        "SELECT shard_num, shard_weight, replica_num, host_name, port FROM system.clusters"
        " WHERE cluster = %(c)s ORDER BY shard_num, replica_num",
        {"c": cluster},
    )
    if not rows:
        raise ClusterError(
            f"the server knows no cluster {cluster!r} (system.clusters); check "
            "FANGXIAN_CLICKHOUSE_CLUSTER and the servers' <remote_servers>"
        )
    shards: dict[int, tuple[int, list[Replica]]] = {}
    for shard_num, weight, replica_num, host, port in rows:
        entry = shards.setdefault(int(shard_num), (int(weight), []))
        entry[1].append(Replica(int(shard_num), int(replica_num), str(host), int(port)))
    return [Shard(n, w, tuple(r)) for n, (w, r) in sorted(shards.items())]


def shard_slots(shards: Sequence[Shard]) -> list[int]:
    """What ``Distributed`` does with a sharding key ``k``: the shard of index
    ``slots[k % len(slots)]``, each shard holding as many slots as its weight."""
    slots = [index for index, shard in enumerate(shards) for _ in range(shard.weight)]
    if not slots:
        raise ClusterError("the cluster has no shard with a weight above 0")
    return slots


def node_target(target: ServerTarget, replica: Replica) -> ServerTarget:
    """``target``'s user, password and database on one node."""
    return ServerTarget(replica.host, replica.port, target.user, target.password, target.database)


def each_node(
    writer: Writer, action: Callable[[Any, Replica], Any], *, connect_timeout_s: float = 2.0
) -> dict[str, Any]:
    """``action(node_writer, replica)`` on every node of the writer's cluster, each through its
    own connection; ``{address: result}``, and ``SinkUnavailable`` as the result of a node that
    did not answer (a node that is down)."""
    from sinks.server import ServerWriter  # the server path only

    cluster = cluster_of(writer)
    target = cast(Any, writer).target
    results: dict[str, Any] = {}
    for shard in topology(cast(Reader, writer), cluster):
        for replica in shard.replicas:
            node = ServerWriter(node_target(target, replica), connect_timeout_s=connect_timeout_s)
            try:
                results[replica.address] = action(node, replica)
            except SinkUnavailable as err:
                results[replica.address] = err
            finally:
                node.close()
    return results


def on_each_shard(writer: Writer, sql: str, *, connect_timeout_s: float = 2.0) -> list[str]:
    """Run ``sql`` once per shard, on the first of its replicas that answers (a mutation of a
    replicated table issued on one replica is carried to the others through ZooKeeper);
    returns the addresses used. ``SinkUnavailable`` when every replica of a shard is down.

    Not ``ON CLUSTER``: that waits for every node, a dead one included (up to
    ``distributed_ddl_task_timeout``), and on 18.16 an ``ALTER`` of a replicated table through
    the DDL queue waits for its shard's leader replica — seen to hold ``forget`` for over a
    minute on a cluster just started."""
    from sinks.server import ServerWriter  # the server path only

    target = cast(Any, writer).target
    used: list[str] = []
    for shard in topology(cast(Reader, writer), cluster_of(writer)):
        failures: list[str] = []
        for replica in shard.replicas:
            node = ServerWriter(node_target(target, replica), connect_timeout_s=connect_timeout_s)
            try:
                node.execute(sql)
            except SinkUnavailable as err:
                failures.append(f"{replica.address}: {str(err).splitlines()[0]}")
                continue
            finally:
                node.close()
            used.append(replica.address)
            break
        else:
            raise SinkUnavailable(
                f"no replica of shard {shard.number} answered: {'; '.join(failures)}"
            )
    return used


def mutation_ids(writer: Writer, table: str) -> dict[str, set[str] | SinkUnavailable]:
    """Per node, the ids of the mutations of ``<database>.<table>`` it knows."""
    db = writer.database

    def ids(node: Any, _: Replica) -> set[str]:
        rows = node.query(
            "SELECT mutation_id FROM system.mutations WHERE database = %(db)s AND table = %(t)s",
            {"db": db, "t": table},
        )
        return {str(r[0]) for r in rows}

    return each_node(writer, ids)


def wait_for_cluster_mutation(
    writer: Writer,
    table: str,
    before: Mapping[str, set[str] | SinkUnavailable],
    *,
    timeout_s: float = 120.0,
) -> list[str]:
    """Wait until every node that answers has a mutation of ``<database>.<table>`` it did not
    have in ``before`` and has finished all of them (a replica learns of a mutation from
    ZooKeeper a moment after the ``ALTER … ON CLUSTER`` returns). Returns the nodes that did not
    answer: they apply the mutation from ZooKeeper's log when they return."""
    db = writer.database
    deadline = time.monotonic() + timeout_s
    while True:

        def state(node: Any, _: Replica) -> tuple[set[str], int]:
            rows = node.query(
                "SELECT mutation_id, is_done FROM system.mutations"
                " WHERE database = %(db)s AND table = %(t)s",
                {"db": db, "t": table},
            )
            return {str(r[0]) for r in rows}, sum(1 for r in rows if not int(r[1]))

        now = each_node(writer, state)
        down = [a for a, s in now.items() if isinstance(s, SinkUnavailable)]
        waiting = [
            address
            for address, s in now.items()
            if not isinstance(s, SinkUnavailable)
            and (s[1] > 0 or not (s[0] - _known(before.get(address))))
        ]
        if not waiting:
            if down:
                log.warning(
                    "mutation of %s.%s not confirmed on %s (not answering); they apply it from"
                    " ZooKeeper when they return",
                    db,
                    table,
                    ", ".join(down),
                )
            return down
        if time.monotonic() > deadline:
            raise SinkError(f"mutation on {db}.{table} did not finish on {', '.join(waiting)}")
        time.sleep(0.05)


def _known(ids: set[str] | SinkUnavailable | None) -> set[str]:
    return ids if isinstance(ids, set) else set()


def sync_replicas(writer: Writer) -> None:
    """``SYSTEM SYNC REPLICA`` of every replicated table of the writer's database on every node
    (each replica has fetched what the others wrote). For checks and tests: a read right after
    an insert may be served by a replica a few milliseconds behind. Raises ``SinkUnavailable``
    when a node does not answer."""
    db = writer.database

    def sync(node: Any, _: Replica) -> None:
        tables = node.query(
            "SELECT name FROM system.tables WHERE database = %(db)s AND engine LIKE 'Replicated%%'",
            {"db": db},
        )
        for (name,) in tables:
            node.execute(f"SYSTEM SYNC REPLICA {db}.{name}")

    for address, result in each_node(writer, sync).items():
        if isinstance(result, SinkUnavailable):
            raise SinkUnavailable(f"node {address} did not answer SYSTEM SYNC REPLICA: {result}")


# --- per-shard inserts ------------------------------------------------------------------------


class ShardedWriter:
    """Inserts straight into each shard's ``t_local``, routed as the ``Distributed`` table
    would route them (``cityHash64(community_id) % total weight`` → shard), through one
    connection per shard that fails over between the shard's replicas; no node forwards
    another shard's rows. Queries, DDL and the tables without a community (dead letters,
    the audit log) go through ``base`` (the ``Distributed`` tables).

    The shards and their replicas are read from ``system.clusters`` on the first write; the key
    hashes are computed by the server (``cityHash64`` of each community, cached), so the
    routing is the server's own by construction."""

    def __init__(self, base: Any, *, replica_offset: int | None = None) -> None:
        self._base = base
        self.database: str = base.database
        self.cluster: str = base.cluster
        self.shard_by: str = base.shard_by
        self._replica_offset = os.getpid() if replica_offset is None else replica_offset
        self._shards: list[Shard] | None = None
        self._slots: list[int] = []
        self._writers: list[Any] = []
        self._hashes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="shard-insert")

    def __repr__(self) -> str:
        return f"ShardedWriter({self._base!r}, shards={len(self._writers) or '?'})"

    # -- Connection --------------------------------------------------------------------------
    @property
    def target(self) -> ServerTarget:
        return cast(ServerTarget, self._base.target)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return cast(list[tuple[Any, ...]], self._base.query(sql, params))

    def execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        self._base.execute(sql, settings=settings)

    def server_version(self) -> tuple[int, ...]:
        return cast(tuple[int, ...], self._base.server_version())

    def forget_schema(self) -> None:
        self._base.forget_schema()
        for writer in self._writers:
            writer.forget_schema()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for writer in self._writers:
            writer.close()
        self._base.close()

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        if SHARDING_COLUMN not in column_names(table):
            return cast(int, self._base.write(table, rows))
        self._connect()
        keys = [shard_key_value(str(row[SHARDING_COLUMN]), self.shard_by) for row in rows]
        hashes = self._hash(keys)
        by_shard: dict[int, list[Mapping[str, Any]]] = {}
        slots = self._slots
        for row, key in zip(rows, keys, strict=True):
            by_shard.setdefault(slots[hashes[key] % len(slots)], []).append(row)
        # every shard's part at once, as Distributed does; a failure leaves the parts that
        # landed in place, and the retry's identical blocks are dropped there
        # (insert_deduplicate); the first failure is raised once all have answered
        if len(by_shard) == 1:
            ((index, part),) = by_shard.items()
            self._writers[index].write(table, part)
            return len(rows)
        futures = [
            self._pool.submit(self._writers[index].write, table, part)
            for index, part in sorted(by_shard.items())
        ]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return len(rows)

    # -- for checks and tests ----------------------------------------------------------------
    def shard_of(self, community_id: str) -> int:
        """The shard number (from 1) that holds ``community_id``'s rows."""
        self._connect()
        key = shard_key_value(community_id, self.shard_by)
        hashed = self._hash([key])[key]
        return self._shards_or_fail()[self._slots[hashed % len(self._slots)]].number

    def current_host(self, shard: int) -> tuple[str, int]:
        """The replica of shard ``shard`` (from 1) this writer inserts through now."""
        self._connect()
        return cast(tuple[str, int], self._writers[shard - 1].current_host())

    # -- helpers -----------------------------------------------------------------------------
    def _shards_or_fail(self) -> list[Shard]:
        if self._shards is None:
            raise ClusterError("not connected")
        return self._shards

    def _connect(self) -> None:
        with self._lock:
            if self._shards is not None:
                return
            from sinks.server import ServerWriter  # the server path only

            shards = topology(self._base, self.cluster)
            target = self.target
            writers = []
            for shard in shards:
                replicas = list(shard.replicas)
                # several sink processes spread over the replicas; each fails over in turn
                turn = self._replica_offset % len(replicas)
                ordered = replicas[turn:] + replicas[:turn]
                first, *others = ordered
                writers.append(
                    ServerWriter(
                        ServerTarget(
                            first.host,
                            first.port,
                            target.user,
                            target.password,
                            target.database,
                            alt_hosts=tuple((r.host, r.port) for r in others),
                        ),
                        settings=self._base.settings,
                        connect_timeout_s=self._base.connect_timeout_s,
                        cluster=self.cluster,
                        shard_by=self.shard_by,
                        table_suffix=LOCAL_SUFFIX,
                    )
                )
            self._slots = shard_slots(shards)
            self._writers = writers
            self._shards = shards
            log.info(
                "per-shard inserts 按分片写入: %s",
                "; ".join(
                    f"shard {s.number}: {', '.join(r.address for r in s.replicas)}" for s in shards
                ),
            )

    def _hash(self, keys: Sequence[str]) -> dict[str, int]:
        missing = sorted({k for k in keys if k not in self._hashes})
        for start in range(0, len(missing), _HASH_CHUNK):
            chunk = missing[start : start + _HASH_CHUNK]
            ((hashes,),) = self._base.query(
                f"SELECT arrayMap(x -> {SHARDING_FUNCTION}(x), %(keys)s)", {"keys": chunk}
            )
            self._hashes.update(zip(chunk, (int(h) for h in hashes), strict=True))
        return self._hashes


def execute_with_settings(writer: Writer, sql: str, settings: Mapping[str, Any]) -> None:
    """``writer.execute(sql)`` with query settings (a server writer; chdb runs it without)."""
    if cluster_of(writer):
        cast(Any, writer).execute(sql, settings=settings)
    else:
        writer.execute(sql)
