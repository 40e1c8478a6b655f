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

    def __init__(self, target: ServerTarget, *, settings: Mapping[str, Any] | None = None) -> None:
        self.database = target.database
        self._target = target
        self._settings = dict(settings or {})
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
            connect_timeout=CONNECT_TIMEOUT_S,
            send_receive_timeout=SEND_RECEIVE_TIMEOUT_S,
            settings=self._settings,
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
        return f"ServerWriter({t.user}@{t.host}:{t.port}/{t.database})"

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        described = self._describe(table)
        with driver_errors_as_sink_errors():
            names, data = encode_for_server(contract_rows.to_columns(table, rows), described)
            column_list = ", ".join(f"`{name}`" for name in names)
            sql = f"INSERT INTO {self.database}.{table} ({column_list}) VALUES"
            with self._lock:
                self._execute(sql, data, columnar=True, types_check=False)
        log.debug("wrote %d rows into %s.%s", len(rows), self.database, table)
        return len(rows)

    def execute(self, sql: str) -> None:
        with driver_errors_as_sink_errors(), self._lock:
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
            described = self.query(f"DESCRIBE TABLE {self.database}.{table}")
            self._described[table] = [(str(row[0]), str(row[1])) for row in described]
        return self._described[table]
