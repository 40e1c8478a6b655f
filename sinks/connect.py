"""Opening a ClickHouse client from its URL (``sinks/base.py`` describes the URLs).

The implementations are imported here, on demand, and nowhere below: ``sinks/base.py`` holds
only the interfaces and the URL, so ``server.py`` and ``embedded.py`` import it without a cycle,
and a chdb URL never imports clickhouse-driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fangxian.core.settings import SettingError
from sinks.base import Connection, Reader, ServerTarget, parse_url

if TYPE_CHECKING:
    from fangxian.core.settings import Settings

#: how the sink's rows reach a cluster (``FANGXIAN_CLICKHOUSE_INSERT``): through the
#: Distributed tables, or straight to each shard's local table by the same key (sinks/cluster.py)
INSERT_MODES = ("distributed", "shards")
#: a cluster's statements:
#: - an insert through a Distributed table returns once every shard has its rows (not once they
#:   are queued on the node that received them), so the sink commits its offsets only after the
#:   rows are on their shards;
#: - ``x IN (SELECT … FROM <Distributed>)`` inside a query on a Distributed table reads the inner
#:   table on each shard locally: a community's rows of every table share a shard, so the local
#:   answer is the whole answer (the console's occupancy joins scans to decisions this way)
CLUSTER_SETTINGS: Mapping[str, Any] = {
    "insert_distributed_sync": 1,
    "distributed_product_mode": "local",
}


def open_writer(
    url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    connect_timeout_s: float | None = None,
    cluster: str = "",
    insert: str = "distributed",
    shard_by: str = "community",
) -> Connection:
    """A connected client for ``url`` (see the module docstring). ``settings`` are ClickHouse
    query settings for a server client; ``connect_timeout_s`` how long a server connect may take
    (``fangxian.core.settings.Settings.connect_timeout_s``; default ``CONNECT_TIMEOUT_S``).
    ``cluster``: the servers' cluster name for cluster mode (``sinks/cluster.py``), ``insert``
    how rows reach it (``INSERT_MODES``), ``shard_by`` what shares a shard (``community`` or
    ``county``). The chdb path never imports clickhouse-driver."""
    target = parse_url(url)
    if insert not in INSERT_MODES:
        raise SettingError(
            "FANGXIAN_CLICKHOUSE_INSERT",
            f"must be one of {', '.join(INSERT_MODES)}, got {insert!r}",
            f"应为 {' 或 '.join(INSERT_MODES)}，实际为 {insert!r}",
        )
    if isinstance(target, ServerTarget):
        from sinks.server import CONNECT_TIMEOUT_S, ServerWriter

        timeout = CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
        if not cluster:
            return ServerWriter(target, settings=settings, connect_timeout_s=timeout)
        from sinks.cluster import SHARD_BY, ShardedWriter, check_cluster_name

        try:
            check_cluster_name(cluster)
        except ValueError as err:
            raise SettingError(
                "FANGXIAN_CLICKHOUSE_CLUSTER", str(err), f"集群名称无效：{cluster!r}"
            ) from err
        if shard_by not in SHARD_BY:
            raise SettingError(
                "FANGXIAN_CLICKHOUSE_SHARD_BY",
                f"must be one of {', '.join(SHARD_BY)}, got {shard_by!r}",
                f"应为 {' 或 '.join(SHARD_BY)}，实际为 {shard_by!r}",
            )
        writer = ServerWriter(
            target,
            settings={**CLUSTER_SETTINGS, **(settings or {})},
            connect_timeout_s=timeout,
            cluster=cluster,
            shard_by=shard_by,
        )
        return ShardedWriter(writer) if insert == "shards" else writer
    if cluster:
        raise SettingError(
            "FANGXIAN_CLICKHOUSE_CLUSTER",
            "a cluster needs clickhouse:// servers, not chdb",
            "集群模式须使用 clickhouse:// 服务器地址，不能用 chdb",
        )
    from sinks.embedded import ChdbWriter

    return ChdbWriter(target)


def open_reader(
    url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    connect_timeout_s: float | None = None,
    cluster: str = "",
    insert: str = "distributed",
    shard_by: str = "community",
) -> Reader:
    """``open_writer`` seen as a ``Reader``: what reports and queries use."""
    return open_writer(
        url,
        settings=settings,
        connect_timeout_s=connect_timeout_s,
        cluster=cluster,
        insert=insert,
        shard_by=shard_by,
    )


def clickhouse_options(settings: Settings) -> dict[str, Any]:
    """``open_writer``'s cluster options from the settings (``FANGXIAN_CLICKHOUSE_CLUSTER``,
    ``FANGXIAN_CLICKHOUSE_INSERT``, ``FANGXIAN_CLICKHOUSE_SHARD_BY``):
    ``open_writer(settings.clickhouse_url, **clickhouse_options(settings))``."""
    return {
        "cluster": settings.clickhouse_cluster,
        "insert": settings.clickhouse_insert,
        "shard_by": settings.clickhouse_shard_by,
    }
