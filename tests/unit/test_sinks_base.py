"""sinks.base: the URL picks the writer and says where it writes."""

from __future__ import annotations

import pytest

from sinks.base import ChdbTarget, ServerTarget, parse_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        pytest.param(
            "clickhouse://ingest:s%40cret@ch.local:9440/fangxian",
            ServerTarget("ch.local", 9440, "ingest", "s@cret", "fangxian"),
            id="server with user, escaped password, port and database",
        ),
        pytest.param(
            "clickhouse://127.0.0.1",
            ServerTarget("127.0.0.1", 9000, "default", "", "fangxian"),
            id="server defaults: port 9000, user default, database fangxian",
        ),
        pytest.param(
            "clickhouse://sink:p%40ss@ch-s1r1:9000,ch-s1r2:9001,ch-s2r1/fangxian",
            ServerTarget(
                "ch-s1r1",
                9000,
                "sink",
                "p@ss",
                "fangxian",
                alt_hosts=(("ch-s1r2", 9001), ("ch-s2r1", 9000)),
            ),
            id="a cluster's nodes: the first tried first, the others for failover",
        ),
        pytest.param(
            "chdb:///srv/fangxian/chdb",
            ChdbTarget("/srv/fangxian/chdb", "fangxian"),
            id="chdb absolute path",
        ),
        pytest.param(
            "chdb://var/chdb", ChdbTarget("var/chdb", "fangxian"), id="chdb relative path"
        ),
        pytest.param(
            "chdb://var/chdb?database=test_1",
            ChdbTarget("var/chdb", "test_1"),
            id="chdb with a database",
        ),
    ],
)
def test_parse_url(url: str, target: ServerTarget | ChdbTarget) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8123", id="HTTP is not a writer"),
        pytest.param("chdb://", id="chdb without a directory"),
        pytest.param("clickhouse://u@h1:9000,:9001/db", id="an empty host in the list"),
        pytest.param("clickhouse://u@h1:9000,h2:x/db", id="a port that is not a number"),
    ],
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)
