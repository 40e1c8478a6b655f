"""The interfaces to ClickHouse — ``Writer`` (inserts, DDL), ``Reader`` (queries), ``Connection``
(both) — and the URL that picks an implementation.

``clickhouse://user:password@host:port/database`` → ``ServerWriter`` (clickhouse-driver, native
protocol); several servers, ``clickhouse://user:password@h1:9000,h2:9000/database``, are tried in
order when one does not answer (the nodes of a cluster); ``chdb:///abs/path`` or
``chdb://relative/path`` → ``ChdbWriter`` (ClickHouse in-process, data on disk at that path).
The database defaults to ``fangxian``; for chdb it can be given as ``?database=name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from fangxian.core.settings import SettingError
from sinks.errors import SinkError

DEFAULT_DATABASE = "fangxian"
DEFAULT_PORT = 9000


class Reader(Protocol):
    """Reads ClickHouse tables of ``database``: readback, reports, contacts."""

    database: str

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a ``SELECT``; ``params`` fill ``%(name)s`` placeholders (quoted)."""
        ...

    def server_version(self) -> tuple[int, ...]:
        """The engine's version, e.g. ``(18, 16, 1)``."""
        ...

    def close(self) -> None: ...


class Writer(Protocol):
    """Writes contract rows into ClickHouse tables of ``database``. Sinks only write: no
    business logic here. Failures raise ``SinkDataError`` / ``SinkUnavailable`` / ``SinkError``.
    """

    database: str

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert ``rows`` (contract event dicts) into ``table`` as one columnar insert;
        return how many rows were written."""
        ...

    def execute(self, sql: str) -> None:
        """Run one statement that returns nothing (DDL, ``INSERT ... VALUES`` literals)."""
        ...

    def close(self) -> None: ...


class Connection(Reader, Writer, Protocol):
    """Both sides, for what must read and write: migrations, ``forget``, the worker's runtime
    (which migrates before it writes). ``open_writer`` returns one."""


@dataclass(frozen=True)
class ServerTarget:
    host: str
    port: int
    user: str
    password: str
    database: str
    # further servers to fail over to, in order (a cluster's nodes): clickhouse-driver's alt_hosts
    alt_hosts: tuple[tuple[str, int], ...] = ()

    @property
    def hosts(self) -> tuple[tuple[str, int], ...]:
        """Every server, the first one first."""
        return ((self.host, self.port), *self.alt_hosts)


@dataclass(frozen=True)
class ChdbTarget:
    path: str  # as given: absolute, or relative to the working directory
    database: str


def parse_url(url: str) -> ServerTarget | ChdbTarget:
    """The target a ClickHouse URL names. Raises ``SettingError`` (a ``ValueError``) naming
    ``FANGXIAN_CLICKHOUSE_URL`` for any other scheme."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "clickhouse":
        login, _, hosts = parts.netloc.rpartition("@")
        user, _, password = login.partition(":")
        addresses = [_host_port(h, url) for h in hosts.split(",")] if hosts else []
        (host, port), *alt = addresses or [("127.0.0.1", DEFAULT_PORT)]
        return ServerTarget(
            host=host,
            port=port,
            user=unquote(user or "default"),
            password=unquote(password),
            database=parts.path.strip("/") or DEFAULT_DATABASE,
            alt_hosts=tuple(alt),
        )
    if parts.scheme == "chdb":
        # chdb:///abs → netloc "" + path "/abs"; chdb://rel/path → netloc "rel" + path "/path"
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise SettingError(
                "FANGXIAN_CLICKHOUSE_URL",
                f"a chdb URL needs a directory: {url!r}",
                f"chdb 地址须包含目录：{url!r}",
            )
        return ChdbTarget(path=unquote(path), database=query.get("database", [DEFAULT_DATABASE])[0])
    raise SettingError(
        "FANGXIAN_CLICKHOUSE_URL",
        f"unsupported scheme {parts.scheme!r} in {url!r} (clickhouse://user:password@host:port/db "
        "or chdb://path)",
        f"不支持的协议 {parts.scheme!r}（应为 clickhouse://用户:密码@主机:端口/库 或 chdb://目录）",
    )


def _host_port(text: str, url: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` of a ClickHouse URL's host list."""
    checked = urlsplit(f"//{text}")
    try:
        port = checked.port
    except ValueError:
        port = -1
    if not checked.hostname or port == -1:
        raise SettingError(
            "FANGXIAN_CLICKHOUSE_URL",
            f"not a host[:port] in {url!r}: {text!r}",
            f"地址中的主机名或端口无效：{text!r}",
        )
    return checked.hostname, port or DEFAULT_PORT


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` → ``(18, 16, 1)``; non-numeric parts end the tuple."""
    numbers: list[int] = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    if not numbers:
        raise SinkError(f"unrecognised server version {text!r}")
    return tuple(numbers)
