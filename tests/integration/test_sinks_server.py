"""ServerWriter specifics on the Debian clickhouse-server 18.16: the legacy table shape, and a
server that is down or goes away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.clickhouse_server import ClickHouseServer
from infra.ports import free_port
from schemas import contract
from sinks import SinkUnavailable, Writer, migrate, open_writer

pytestmark = pytest.mark.clickhouse_server


@pytest.fixture
def writer(clickhouse_url: str) -> Iterator[Writer]:
    opened = open_writer(clickhouse_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize(
    ("table", "column", "stored_as"),
    [
        pytest.param("gate_scans", "event_time", "DateTime('UTC')", id="DateTime64 as seconds"),
        pytest.param("gate_scans", "event_time_ms", "UInt16", id="plus the milliseconds"),
        pytest.param("gate_scans", "gate_id", "String", id="LowCardinality as String"),
        pytest.param("gate_scans", "face_consent", "UInt8", id="Bool as UInt8"),
        pytest.param("alerts", "details.key", "Array(String)", id="Map keys as a Nested array"),
        pytest.param("alerts", "details.value", "Array(String)", id="Map values likewise"),
        pytest.param(
            "health_reports", "symptoms", "Array(String)", id="Array(LowCardinality) as Array"
        ),
    ],
)
def test_the_legacy_server_gets_the_adapted_tables(
    writer: Writer, table: str, column: str, stored_as: str
) -> None:
    assert writer.server_version()[:2] == (18, 16)
    migrate(writer)
    described = {
        row[0]: row[1] for row in writer.query(f"DESCRIBE TABLE {writer.database}.{table}")
    }
    assert described[column] == stored_as


def test_a_server_nobody_listens_on_is_unavailable() -> None:
    writer = open_writer(f"clickhouse://default@127.0.0.1:{free_port()}/fangxian")
    try:
        with pytest.raises(SinkUnavailable):
            writer.write("gate_decisions", contract.examples("GateDecision"))
    finally:
        writer.close()


def test_a_server_that_went_away_is_unavailable() -> None:
    # A server of its own: stopping the session one would break the other tests.
    with ClickHouseServer() as server:
        writer = open_writer(server.url_for("fangxian"))
        try:
            migrate(writer, retention_days=10_000)
            assert writer.write("gate_decisions", contract.examples("GateDecision")) == 2
            server.stop()
            with pytest.raises(SinkUnavailable):
                writer.write("gate_decisions", contract.examples("GateDecision"))
        finally:
            writer.close()
