"""The BI views of sinks/migrations/0005_bi_views.sql, on embedded ClickHouse and on the Debian
18.16 server, over the hand-counted fixture day: the figures, plain column types, Chinese column
comments, and read access for bi_reader."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from infra.clickhouse_server import BI_READER, ClickHouseServer
from sinks import Writer, open_writer
from tests.integration.bi_fixture import EXPECTED, load_bi_fixture, plain_rows

PLAIN_TYPE = re.compile(r"^(String|UInt64|Date|DateTime\('UTC'\))$")


@pytest.fixture(
    params=[
        pytest.param("chdb", marks=pytest.mark.chdb),
        pytest.param("server", marks=pytest.mark.clickhouse_server, id="clickhouse 18.16"),
    ]
)
def loaded(request: pytest.FixtureRequest) -> Iterator[Writer]:
    name = "chdb_url" if request.param == "chdb" else "clickhouse_url"
    writer = open_writer(request.getfixturevalue(name))
    try:
        load_bi_fixture(writer)
        yield writer
    finally:
        writer.close()


@pytest.mark.parametrize("view", sorted(EXPECTED))
def test_view_gives_the_hand_counted_figures(loaded: Writer, view: str) -> None:
    order, expected = EXPECTED[view]
    got = loaded.query(f"SELECT * FROM {loaded.database}.{view} ORDER BY {order}")
    assert plain_rows(got) == plain_rows(expected)


def test_views_have_plain_types_and_chinese_comments(loaded: Writer) -> None:
    columns = loaded.query(
        "SELECT table, name, type, comment FROM system.columns"
        f" WHERE database = '{loaded.database}' AND table LIKE 'bi\\_%'"
    )
    assert {table for table, *_ in columns} == set(EXPECTED)
    for table, name, column_type, comment in columns:
        assert PLAIN_TYPE.match(column_type), (table, name, column_type)
        assert re.search(r"[\u4e00-\u9fff]", comment) or name == "message_en", (table, name)


@pytest.mark.clickhouse_server
def test_bi_reader_reads_every_view_and_cannot_write(
    clickhouse_server: ClickHouseServer, clickhouse_url: str
) -> None:
    writer = open_writer(clickhouse_url)
    try:
        load_bi_fixture(writer)
        database = writer.database
    finally:
        writer.close()
    client = clickhouse_server.client(user=BI_READER, database=database)
    try:
        for view in EXPECTED:
            assert client.execute(f"SELECT count() FROM {view}")[0][0] > 0, view
        with pytest.raises(Exception, match="readonly"):
            client.execute("DROP TABLE bi_alerts")
    finally:
        client.disconnect()
