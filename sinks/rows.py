"""Contract event dicts → one list per column, per table. Pure; no database types here.

Every contract field becomes a column of the same name, in contract order. ``ingested_at`` is
the one extra column: the database fills it (``DEFAULT now64(3)``) so the writer never reads a
clock — unless the rows carry it. The sink stage stamps one value on every row of a batch before
its first insert, so an insert it retries is the very same block, which the server's insert
deduplication can recognise and drop (a default filled at each attempt made every retry a new
block). Values stay in the contract's own representation — epoch-ms ``int`` timestamps, ``int``
days for dates, enum symbol strings, ``None`` for null, ``bytes`` for ``DeadLetter.original``
(stored as raw bytes in a ``String`` column, not base64) — and each writer encodes them for its
transport (Arrow for chdb, clickhouse-driver columns for the server).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas import topics
from sinks.errors import SinkError

INGESTED_AT = "ingested_at"


class Kind(StrEnum):
    """How a contract value is represented in an event dict."""

    STRING = "string"  # str (also enum symbols)
    TIMESTAMP_MS = "timestamp_ms"  # int epoch milliseconds, UTC
    DATE_DAYS = "date_days"  # int days since 1970-01-01
    FLOAT = "float"
    INT32 = "int32"
    INT64 = "int64"
    BOOL = "bool"
    STRINGS = "strings"  # list[str]
    STRING_MAP = "string_map"  # dict[str, str]
    BYTES = "bytes"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False
    # Used when an event dict lacks the key (the contract's default); None means no default.
    default: Any = None


_S, _TS = Kind.STRING, Kind.TIMESTAMP_MS

TABLES: Mapping[str, tuple[Column, ...]] = {
    "gate_scans": (
        Column("event_id", _S),
        Column("community_id", _S),
        Column("gate_id", _S),
        Column("device_id", _S),
        Column("direction", _S),
        Column("subject_type", _S),
        Column("subject_id", _S),
        Column("household_id", _S, nullable=True),
        Column("method", _S),
        Column("health_code", _S, default="UNKNOWN"),
        Column("face_consent", Kind.BOOL, default=False),
        Column("temperature_c", Kind.FLOAT, nullable=True),
        Column("event_time", _TS),
    ),
    "temperature_readings": (
        Column("event_id", _S),
        Column("community_id", _S),
        Column("gate_id", _S),
        Column("device_id", _S),
        Column("subject_id", _S, nullable=True),
        Column("temperature_c", Kind.FLOAT),
        Column("ambient_c", Kind.FLOAT, nullable=True),
        Column("sensor", _S),
        Column("event_time", _TS),
    ),
    "health_reports": (
        Column("event_id", _S),
        Column("community_id", _S),
        Column("resident_id", _S),
        Column("report_date", Kind.DATE_DAYS),
        Column("temperature_c", Kind.FLOAT, nullable=True),
        Column("symptoms", Kind.STRINGS, default=()),
        Column("event_time", _TS),
    ),
    "gate_decisions": (
        Column("event_id", _S),
        Column("community_id", _S),
        Column("gate_id", _S),
        Column("subject_id", _S),
        Column("decision", _S),
        Column("reasons", Kind.STRINGS, default=()),
        Column("decided_at", _TS),
    ),
    "alerts": (
        Column("alert_id", _S),
        Column("alert_type", _S, default="OTHER"),
        Column("severity", _S),
        Column("community_id", _S),
        Column("gate_id", _S, nullable=True),
        Column("device_id", _S, nullable=True),
        Column("subject_id", _S, nullable=True),
        Column("source_event_ids", Kind.STRINGS, default=()),
        Column("message_zh", _S),
        Column("message_en", _S),
        Column("details", Kind.STRING_MAP, default={}),
        Column("event_time", _TS),
        Column("created_at", _TS),
    ),
    "dead_letters": (
        Column("dead_letter_id", _S),
        Column("reason", _S),
        Column("detail", _S),
        Column("source_topic", _S),
        Column("source_partition", Kind.INT32),
        Column("source_offset", Kind.INT64),
        Column("original", Kind.BYTES),
        Column("created_at", _TS),
    ),
    "alert_actions": (
        Column("action_id", _S),
        Column("alert_id", _S),
        Column("community_id", _S),
        Column("action", _S),
        Column("alert_type", _S),
        Column("severity", _S),
        Column("gate_id", _S, nullable=True),
        Column("level", Kind.INT32, default=0),
        Column("staff_ids", Kind.STRINGS, default=()),
        Column("channel", _S, nullable=True),
        Column("delivery_id", _S, nullable=True),
        Column("attempt", Kind.INT32, default=0),
        Column("group_count", Kind.INT32, default=1),
        Column("detail", Kind.STRING_MAP, default={}),
        Column("alert_event_time", _TS),
        Column("created_at", _TS),
    ),
    # the one table that is not a contract record: staff actions on personal data, written by
    # the tools (sinks/audit.py), never from Kafka
    "audit_log": (
        Column("audit_id", _S),
        Column("at", _TS),
        Column("actor", _S),
        Column("action", _S),
        Column("subject", _S),
        Column("subject_ref", _S),
        Column("scope", _S),
        Column("details", Kind.STRING_MAP, default={}),
        Column("origin", _S),
    ),
}

# Which table holds which contract record: the contract table, schemas/topics.py.
TABLE_OF_RECORD: Mapping[str, str] = topics.TABLE_OF_RECORD


class UnknownTable(SinkError):
    """A table name that is not one of the contract tables (a bug, not a data problem)."""


def columns_of(table: str) -> tuple[Column, ...]:
    """The contract columns of ``table`` in insert order (``ingested_at`` excluded)."""
    try:
        return TABLES[table]
    except KeyError:
        raise UnknownTable(f"not a contract table: {table!r}") from None


def column_names(table: str) -> tuple[str, ...]:
    """Every column of ``table`` as stored: the contract fields, then ``ingested_at``."""
    return (*(c.name for c in columns_of(table)), INGESTED_AT)


def to_columns(table: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """One list per contract column, in column order. Missing keys take the contract default.
    Rows that carry ``ingested_at`` (epoch ms; the sink stamps each batch once, see
    ``streams/stages/sink.py``) add that column; rows without it leave it to the database."""
    columns = {
        column.name: [row.get(column.name, column.default) for row in rows]
        for column in columns_of(table)
    }
    if rows and INGESTED_AT in rows[0]:
        columns[INGESTED_AT] = [row.get(INGESTED_AT) for row in rows]
    return columns
