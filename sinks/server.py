"""``ServerWriter``: a ClickHouse server over the native protocol (clickhouse-driver)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from sinks import rows as contract_rows
from sinks.base import ServerTarget, parse_version
from sinks.errors import driver_errors_as_sink_errors
from sinks.legacy import encode_for_server

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
SEND_RECEIVE_TIMEOUT_S = 60.0
UNKNOWN_DATABASE = 81


class ServerWriter:
    """Columnar inserts through one clickhouse-driver ``Client`` (reconnects on its own after a
    dropped connection). Calls are serialised: a Client is not thread-safe."""

    def __init__(
        self,
        target: ServerTarget,
        *,
        settings: Mapping[str, Any] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        cluster: str = "",
        shard_by: str = "community",
        table_suffix: str = "",
    ) -> None:
        self.database = target.database
        # the ClickHouse cluster the tables live on ("" = one server): migrations run ON CLUSTER
        # and ``forget`` mutates every shard (sinks/cluster.py); ``shard_by`` what keeps rows
        # together on a shard (a community or its county, sinks.cluster.SHARD_BY)
        self.cluster = cluster
        self.shard_by = shard_by
        # inserts go to ``<table><table_suffix>``: "_local" writes one shard's replicated table
        # directly (sinks/cluster.py, per-shard inserts) instead of the Distributed table
        self.table_suffix = table_suffix
        self._target = target
        self._settings = dict(settings or {})
        self._connect_timeout_s = connect_timeout_s
        # Connect to the target database: a least-privilege user may not even open "default"
        # (18.16 allow_databases, a current server's grants). Names are qualified anyway, so
        # before migrate() created the database the writer falls back to "default" once.
        self._connected_to = target.database
        self._answered = False
        self._client = self._new_client(target.database)
        self._lock = threading.Lock()
        self._described: dict[str, list[tuple[str, str]]] = {}
        self._version: tuple[int, ...] | None = None

    def _new_client(self, database: str) -> Client:
        t = self._target
        return Client(
            host=t.host,
            port=t.port,
            user=t.user,
            password=t.password,
            database=database,
            connect_timeout=self._connect_timeout_s,
            send_receive_timeout=SEND_RECEIVE_TIMEOUT_S,
            settings=self._settings,
            # the other servers of the URL, tried in turn when one does not answer
            alt_hosts=",".join(f"{h}:{p}" for h, p in t.alt_hosts) or None,
        )

    def _execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        """``Client.execute`` (the caller holds the lock), falling back to the "default"
        database when the target one does not exist yet (before the first migration)."""
        try:
            result = self._client.execute(sql, *args, **kwargs)
            self._answered = True
            return result
        except (ServerException, EOFError) as err:
            # 18.16 closes the connection on an unknown database; newer servers say code 81.
            # Only the first contact can mean that: later, an EOF is an outage.
            unknown = isinstance(err, EOFError) or err.code == UNKNOWN_DATABASE
            if not unknown or self._answered or self._connected_to == "default":
                raise
            log.info("database %s does not exist yet; connecting to default", self.database)
            self._client.disconnect()
            self._connected_to = "default"
            self._client = self._new_client("default")
            return self._client.execute(sql, *args, **kwargs)

    def __repr__(self) -> str:
        t = self._target
        hosts = ",".join(f"{h}:{p}" for h, p in t.hosts)
        return f"ServerWriter({t.user}@{hosts}/{t.database})"

    @property
    def target(self) -> ServerTarget:
        return self._target

    @property
    def settings(self) -> dict[str, Any]:
        """The query settings every statement of this writer runs with."""
        return dict(self._settings)

    @property
    def connect_timeout_s(self) -> float:
        return self._connect_timeout_s

    def current_host(self) -> tuple[str, int]:
        """The server this writer talks to now: the one connected, else the next one tried."""
        connection = self._client.connection
        if connection.connected and connection.host:
            return str(connection.host), int(connection.port)
        host, port = connection.hosts[0]
        return str(host), int(port)

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        described = self._describe(table)
        with driver_errors_as_sink_errors():
            names, data = encode_for_server(contract_rows.to_columns(table, rows), described)
            column_list = ", ".join(f"`{name}`" for name in names)
            sql = f"INSERT INTO {self.database}.{table}{self.table_suffix} ({column_list}) VALUES"
            with self._lock:
                self._execute(sql, data, columnar=True, types_check=False)
        log.debug("wrote %d rows into %s.%s", len(rows), self.database, table)
        return len(rows)

    def execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        """Run ``sql``; ``settings``: query settings for this statement only."""
        with driver_errors_as_sink_errors(), self._lock:
            if settings:
                self._execute(sql, settings=dict(settings))
            else:
                self._execute(sql)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with driver_errors_as_sink_errors(), self._lock:
            result = self._execute(sql, params)
        return [tuple(row) for row in result]

    def server_version(self) -> tuple[int, ...]:
        if self._version is None:
            ((text,),) = self.query("SELECT version()")
            self._version = parse_version(text)
        return self._version

    def forget_schema(self) -> None:
        """Drop cached table descriptions (after a migration changed a table)."""
        self._described.clear()

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()

    def _describe(self, table: str) -> list[tuple[str, str]]:
        if table not in self._described:
            contract_rows.columns_of(table)  # an unknown table is a bug, not a server question
            described = self.query(f"DESCRIBE TABLE {self.database}.{table}{self.table_suffix}")
            self._described[table] = [(str(row[0]), str(row[1])) for row in described]
        return self._described[table]
