"""``ChdbWriter``: ClickHouse in-process (chdb) with its data on disk.

Rows go in as one Arrow IPC stream per insert (``INSERT ... FORMAT ArrowStream`` through a
streaming inserter): columnar end to end, with timestamps handed over as epoch-ms integers.

chdb runs one embedded engine per process, bound to one directory: open one ``ChdbWriter`` at a
time (close it before opening another path).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from chdb import session as chdb_session

from sinks import rows as contract_rows
from sinks.base import ChdbTarget, parse_version
from sinks.errors import SinkUnavailable, chdb_errors_as_sink_errors
from sinks.rows import Kind

log = logging.getLogger(__name__)

ARROW_TYPES: Mapping[Kind, pa.DataType] = {
    Kind.STRING: pa.string(),
    Kind.TIMESTAMP_MS: pa.timestamp("ms", tz="UTC"),
    Kind.DATE_DAYS: pa.date32(),
    Kind.FLOAT: pa.float64(),
    Kind.INT32: pa.int32(),
    Kind.INT64: pa.int64(),
    Kind.BOOL: pa.bool_(),
    Kind.STRINGS: pa.list_(pa.string()),
    Kind.STRING_MAP: pa.map_(pa.string(), pa.string()),
    Kind.BYTES: pa.binary(),
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a contract table's insert (``ingested_at`` excluded)."""
    return pa.schema(
        [
            pa.field(c.name, ARROW_TYPES[c.kind], nullable=c.nullable)
            for c in contract_rows.columns_of(table)
        ]
    )


def to_arrow(table: str, columns: Mapping[str, list[Any]]) -> pa.Table:
    """Contract columns (``rows.to_columns``) as an Arrow table. A value that does not fit its
    column type raises ``pyarrow.ArrowInvalid`` / ``ArrowTypeError``."""
    schema = arrow_schema(table)
    arrays = [pa.array(columns[field.name], type=field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def arrow_stream_bytes(batch: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as stream:
        stream.write_table(batch)
    return sink.getvalue()


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def substitute(sql: str, params: Mapping[str, Any] | None) -> str:
    """``%(name)s`` placeholders filled with quoted literals (clickhouse-driver's style)."""
    if not params:
        return sql
    return sql % {name: _literal(value) for name, value in params.items()}


class ChdbWriter:
    """Writer over one chdb session. Calls are serialised: one session, one query at a time."""

    def __init__(self, target: ChdbTarget) -> None:
        self.database = target.database
        self.path = target.path
        with chdb_errors_as_sink_errors():
            self._session = chdb_session.Session(target.path)
        self._lock = threading.Lock()
        self._closed = False
        self._version: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"ChdbWriter({self.path!r}, database={self.database!r})"

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        with chdb_errors_as_sink_errors():
            columns = contract_rows.to_columns(table, rows)
            payload = arrow_stream_bytes(to_arrow(table, columns))
            column_list = ", ".join(f"`{name}`" for name in columns)
            sql = f"INSERT INTO {self.database}.{table} ({column_list})"
            with self._lock:
                self._check_open()
                with self._session.send_insert(sql, "ArrowStream") as inserter:
                    inserter.append(payload)
                    inserter.finish()
        # the server's rows_written also counts rows the materialised views derived from these
        written = len(rows)
        log.debug("wrote %d rows into %s.%s", written, self.database, table)
        return written

    def execute(self, sql: str) -> None:
        with chdb_errors_as_sink_errors(), self._lock:
            self._check_open()
            self._session.query(sql)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with chdb_errors_as_sink_errors(), self._lock:
            self._check_open()
            result = self._session.query(substitute(sql, params), "ArrowTable")
        columns = [column.to_pylist() for column in result.columns]
        return list(zip(*columns, strict=True))

    def server_version(self) -> tuple[int, ...]:
        if self._version is None:
            ((text,),) = self.query("SELECT version()")
            self._version = parse_version(text)
        return self._version

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SinkUnavailable(f"{self!r} is closed")
