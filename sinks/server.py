"""``ServerWriter``: a ClickHouse server over the native protocol (clickhouse-driver)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_driver import Client

from sinks import rows as contract_rows
from sinks.base import ServerTarget, parse_version
from sinks.errors import driver_errors_as_sink_errors
from sinks.legacy import encode_for_server

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
SEND_RECEIVE_TIMEOUT_S = 60.0


class ServerWriter:
    """Columnar inserts through one clickhouse-driver ``Client`` (reconnects on its own after a
    dropped connection). Calls are serialised: a Client is not thread-safe."""

    def __init__(
        self,
        target: ServerTarget,
        *,
        settings: Mapping[str, Any] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.database = target.database
        self._target = target
        # The database may not exist before migrate(): connect to "default", qualify names.
        self._client = Client(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database="default",
            connect_timeout=connect_timeout_s,
            send_receive_timeout=SEND_RECEIVE_TIMEOUT_S,
            settings=dict(settings or {}),
        )
        self._lock = threading.Lock()
        self._described: dict[str, list[tuple[str, str]]] = {}
        self._version: tuple[int, ...] | None = None

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
                self._client.execute(sql, data, columnar=True, types_check=False)
        log.debug("wrote %d rows into %s.%s", len(rows), self.database, table)
        return len(rows)

    def execute(self, sql: str) -> None:
        with driver_errors_as_sink_errors(), self._lock:
            self._client.execute(sql)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with driver_errors_as_sink_errors(), self._lock:
            result = self._client.execute(sql, params)
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
