"""Everything an old ClickHouse server (Debian's 18.16) needs, in one place.

The migrations are written for current ClickHouse and are never weakened; ``adapt_for_legacy``
rewrites their DDL for a server older than each feature, and ``encode_for_server`` shapes the
contract columns for whatever column types the server's table actually has.

On a server older than 20.1 a ``DateTime64(3, 'UTC')`` column ``x`` becomes ``x DateTime('UTC')``
(whole seconds, so ``toStartOfMinute(x)`` and ``toDate(x)`` read the same in reports) plus
``x_ms UInt16`` holding the milliseconds; ``toUInt64(x) * 1000 + x_ms`` gives the contract value
back. Before 21.8 ``Map(String, String)`` becomes ``Nested(key String, value String)``, stored as
the arrays ``details.key`` / ``details.value`` (``details.value[indexOf(details.key, 'k')]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sinks.errors import SinkError

MS_SUFFIX = "_ms"
_EPOCH = date(1970, 1, 1)


def _replace_wrapped(sql: str, wrapper: str, rewrite: Callable[[str], str]) -> str:
    """Replace every ``wrapper(...)`` (balanced parentheses) by ``rewrite(inner)``."""
    out: list[str] = []
    pos = 0
    pattern = re.compile(rf"\b{wrapper}\(")
    while match := pattern.search(sql, pos):
        depth, end = 1, match.end()
        while depth:
            if end >= len(sql):
                raise ValueError(f"unbalanced parentheses after {wrapper} in: {sql!r}")
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        out.append(sql[pos : match.start()])
        out.append(rewrite(sql[match.end() : end - 1]))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _split_top_level(args: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(args):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
    parts.append(args[start:].strip())
    return parts


def strip_low_cardinality(sql: str) -> str:
    """``LowCardinality(T)`` → ``T`` (18.x has it only as an experimental setting)."""
    return _replace_wrapped(sql, "LowCardinality", lambda inner: strip_low_cardinality(inner))


_NON_REPLICATED_WINDOW = re.compile(r"\s*\bnon_replicated_deduplication_window\s*=\s*\d+\s*,?")


def drop_settings(sql: str) -> str:
    """Remove ``non_replicated_deduplication_window`` (20.10+) from the ``SETTINGS ...`` line,
    and the line when nothing else is left on it (a replicated table's
    ``replicated_deduplication_window``, sinks/cluster.py, is as old as replication and stays)."""
    lines = []
    for line in sql.split("\n"):
        if line.lstrip().startswith("SETTINGS "):
            line = _NON_REPLICATED_WINDOW.sub("", line).rstrip().rstrip(",")
            if line.strip() == "SETTINGS":
                continue
        lines.append(line)
    return "\n".join(lines)


def drop_ttl(sql: str) -> str:
    """Remove ``TTL ...`` lines (table TTL arrived in 19.6)."""
    return "\n".join(line for line in sql.split("\n") if not line.lstrip().startswith("TTL "))


_DT64_COLUMN = re.compile(
    r"^(?P<indent>\s*)(?P<name>\w+) (?P<rest>.*?DateTime64\(.*?)(?P<comma>,?)$"
)
_DT64_TYPE = re.compile(r"DateTime64\(\s*\d+\s*(?:,\s*(?P<tz>'[^']*')\s*)?\)")


def _datetime_type(match: re.Match[str]) -> str:
    tz = match.group("tz")
    return f"DateTime({tz})" if tz else "DateTime"


def datetime64_to_datetime(sql: str) -> str:
    """``x DateTime64(3, tz)`` → ``x DateTime(tz)`` plus ``x_ms UInt16`` (DateTime64 is 20.1+)."""
    lines = []
    for line in sql.split("\n"):
        column = _DT64_COLUMN.match(line)
        if column is None:
            lines.append(_DT64_TYPE.sub(_datetime_type, line).replace("now64(3)", "now()"))
            continue
        rest = _DT64_TYPE.sub(_datetime_type, column["rest"]).replace("now64(3)", "now()")
        lines.append(f"{column['indent']}{column['name']} {rest},")
        ms = f"{column['indent']}{column['name']}{MS_SUFFIX} UInt16 DEFAULT 0{column['comma']}"
        lines.append(ms)
    return "\n".join(lines)


def map_to_nested(sql: str) -> str:
    """``Map(K, V)`` → ``Nested(key K, value V)`` (Map is 21.8+; Nested stores two arrays)."""

    def nested(inner: str) -> str:
        key_type, value_type = _split_top_level(inner)
        return f"Nested(key {key_type}, value {value_type})"

    return _replace_wrapped(sql, "Map", nested)


_MAP_SUBSCRIPT = re.compile(r"\b(?P<column>[a-z_][a-z0-9_]*)\['(?P<key>[^']*)'\]")


def map_subscript_to_nested(sql: str) -> str:
    """``m['k']`` → ``m.value[indexOf(m.key, 'k')]`` (a Map read as its Nested arrays; a
    missing key reads '' either way)."""
    return _MAP_SUBSCRIPT.sub(
        lambda m: f"{m['column']}.value[indexOf({m['column']}.key, '{m['key']}')]", sql
    )


def bool_to_uint8(sql: str) -> str:
    """``Bool`` → ``UInt8`` (Bool is 21.12+)."""
    return re.sub(r"\bBool\b", "UInt8", sql)


@dataclass(frozen=True)
class Rewrite:
    feature: str
    since: tuple[int, int]  # first server version that understands the modern form
    apply: Callable[[str], str]


# Order matters: TTL goes before DateTime64 is rewritten (its expression names the column).
REWRITES: tuple[Rewrite, ...] = (
    Rewrite("LowCardinality", (19, 0), strip_low_cardinality),
    Rewrite("TTL", (19, 6), drop_ttl),
    Rewrite("DateTime64", (20, 1), datetime64_to_datetime),
    Rewrite("non_replicated_deduplication_window", (20, 10), drop_settings),
    Rewrite("Map", (21, 8), map_to_nested),
    Rewrite("Map subscript", (21, 8), map_subscript_to_nested),
    Rewrite("Bool", (21, 12), bool_to_uint8),
)


def supports(version: Sequence[int], feature: str) -> bool:
    """Whether a server of ``version`` understands ``feature`` (a ``Rewrite.feature``)."""
    for rewrite in REWRITES:
        if rewrite.feature == feature:
            return tuple(version[:2]) >= rewrite.since
    raise KeyError(f"no rewrite for feature {feature!r}")


def is_legacy(version: Sequence[int]) -> bool:
    """True when at least one rewrite applies to a server of ``version``."""
    return any(tuple(version[:2]) < rewrite.since for rewrite in REWRITES)


def adapt_for_legacy(sql: str, version: Sequence[int]) -> str:
    """``sql`` (modern DDL) rewritten for a server of ``version``; unchanged on a current one."""
    for rewrite in REWRITES:
        if tuple(version[:2]) < rewrite.since:
            sql = rewrite.apply(sql)
    return sql


# --- rows -----------------------------------------------------------------------------------


def _seconds(values: list[Any]) -> list[Any]:
    return [None if v is None else v // 1000 for v in values]


def _millis(values: list[Any]) -> list[int]:
    return [0 if v is None else v % 1000 for v in values]


def _dates(values: list[Any]) -> list[Any]:
    return [None if v is None else _EPOCH + timedelta(days=v) for v in values]


def _encode(values: list[Any], column_type: str) -> list[Any]:
    """Contract values → what clickhouse-driver takes for ``column_type``."""
    inner = column_type.removeprefix("Nullable(")
    if inner.startswith("DateTime64"):
        return values  # raw ints at scale 3 are epoch milliseconds
    if inner.startswith("DateTime"):
        return _seconds(values)
    if inner.startswith("Date"):
        return _dates(values)
    return values


def encode_for_server(
    columns: Mapping[str, list[Any]], described: Sequence[tuple[str, str]]
) -> tuple[list[str], list[list[Any]]]:
    """Column names and data for a columnar insert into a table described as ``described``
    (``(name, type)`` pairs from ``DESCRIBE TABLE``). Table columns the contract does not fill
    (``ingested_at``) are left to their defaults; a contract column the table lacks is a missing
    migration and raises ``SinkError``.
    """
    types = dict(described)
    names: list[str] = []
    data: list[list[Any]] = []
    filled: set[str] = set()
    for name, column_type in described:
        base, _, part = name.rpartition(".")
        if name in columns:
            names.append(name)
            data.append(_encode(columns[name], column_type))
            filled.add(name)
        elif name.endswith(MS_SUFFIX) and name.removesuffix(MS_SUFFIX) in columns:
            names.append(name)
            data.append(_millis(columns[name.removesuffix(MS_SUFFIX)]))
        elif base in columns and part in ("key", "value"):
            names.append(name)
            maps = columns[base]
            data.append([list(m.keys() if part == "key" else m.values()) for m in maps])
            filled.add(base)
    missing = [name for name in columns if name not in filled]
    if missing:
        raise SinkError(f"table has no column for {missing}; known columns: {sorted(types)}")
    return names, data
