"""Opening a ClickHouse client from its URL (``sinks/base.py`` describes the URLs).

The implementations are imported here, on demand, and nowhere below: ``sinks/base.py`` holds
only the interfaces and the URL, so ``server.py`` and ``embedded.py`` import it without a cycle,
and a chdb URL never imports clickhouse-driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.base import Connection, Reader, ServerTarget, parse_url


def open_writer(
    url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    connect_timeout_s: float | None = None,
) -> Connection:
    """A connected client for ``url`` (see the module docstring). ``settings`` are ClickHouse
    query settings for a server client; ``connect_timeout_s`` how long a server connect may take
    (``fangxian.core.settings.Settings.connect_timeout_s``; default ``CONNECT_TIMEOUT_S``). The
    chdb path never imports clickhouse-driver."""
    target = parse_url(url)
    if isinstance(target, ServerTarget):
        from sinks.server import CONNECT_TIMEOUT_S, ServerWriter

        timeout = CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
        return ServerWriter(target, settings=settings, connect_timeout_s=timeout)
    from sinks.embedded import ChdbWriter

    return ChdbWriter(target)


def open_reader(
    url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    connect_timeout_s: float | None = None,
) -> Reader:
    """``open_writer`` seen as a ``Reader``: what reports and queries use."""
    return open_writer(url, settings=settings, connect_timeout_s=connect_timeout_s)
