"""Rows read back in the contract's own representation (epoch-ms ints, int days, enum strings,
bytes), whatever the server version stored them as. For tests, replays and checks; the hot path
never reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sinks.base import Reader
from sinks.legacy import MS_SUFFIX, supports
from sinks.rows import Column, Kind, columns_of


def _select_expressions(column: Column, version: Sequence[int]) -> list[str]:
    name = column.name
    if column.kind is Kind.STRING:
        return [f"toString({name})"]  # Enum8 → its symbol (chdb's Arrow output gives the code)
    if column.kind is Kind.TIMESTAMP_MS:
        if not supports(version, "DateTime64"):
            return [f"toUInt64({name}) * 1000 + {name}{MS_SUFFIX}"]
        return [f"toUnixTimestamp64Milli({name})"]
    if column.kind is Kind.DATE_DAYS:
        return [f"toInt32({name})"]
    if column.kind is Kind.BYTES:
        return [f"hex({name})"]
    if column.kind is Kind.STRING_MAP:
        if not supports(version, "Map"):
            return [f"{name}.key", f"{name}.value"]
        return [f"mapKeys({name})", f"mapValues({name})"]
    return [name]


def contract_select(
    table: str,
    database: str,
    version: Sequence[int],
    *,
    where: str = "",
    final: bool = True,
    ordered: bool = True,
) -> str:
    """``SELECT`` of every contract column of ``table`` as contract values (maps as two
    columns, keys and values), ordered by the table's id column unless ``ordered`` is off."""
    columns = columns_of(table)
    expressions = [e for c in columns for e in _select_expressions(c, version)]
    sql = f"SELECT {', '.join(expressions)} FROM {database}.{table}"
    if final:
        sql += " FINAL"
    if where:
        sql += f" WHERE {where}"
    return sql + f" ORDER BY {columns[0].name}" if ordered else sql


def _decode(values: list[Any], columns: tuple[Column, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    it = iter(values)
    for column in columns:
        value = next(it)
        if value is not None:
            if column.kind is Kind.BOOL:
                value = bool(value)
            elif column.kind is Kind.BYTES:
                value = bytes.fromhex(value)
            elif column.kind is Kind.STRING_MAP:
                value = dict(zip(value, next(it), strict=True))
            elif column.kind is Kind.STRINGS:
                value = list(value)
            elif column.kind is Kind.TIMESTAMP_MS or column.kind is Kind.DATE_DAYS:
                value = int(value)
        row[column.name] = value
    return row


def read_contract_rows(
    reader: Reader, table: str, *, where: str = "", final: bool = True
) -> list[dict[str, Any]]:
    """Every row of ``table`` (optionally filtered by a SQL ``where``) as a contract dict,
    ordered by the table's id column.

    Ordered here, not by the server: 18.16 fails ``SELECT … FROM <Distributed> FINAL ORDER BY
    …`` without a ``WHERE`` ("Cannot find column … in source stream"), which is what readback
    of a whole table on a cluster asks (sinks/cluster.py). Strings compare the same way in both
    (UTF-8 bytes and code points order alike)."""
    sql = contract_select(
        table, reader.database, reader.server_version(), where=where, final=final, ordered=False
    )
    columns = columns_of(table)
    rows = [_decode(list(values), columns) for values in reader.query(sql)]
    rows.sort(key=lambda row: row[columns[0].name])
    return rows
