"""Real services for the integration tests, started once per session on free loopback ports.

A test asks for what it needs by fixture name and is marked by it automatically, so
``-m "not kafka and not clickhouse_server"`` runs without services:

- ``kafka_broker`` (marker ``kafka``): Apache Kafka, KRaft single node (infra.kafka_broker).
- ``topics`` (``kafka``): a fresh ``Settings`` whose topic names carry a prefix unique to the
  test, all topics created on ``kafka_broker``; deleted again afterwards.
- ``clickhouse_server`` (``clickhouse_server``): the Debian clickhouse-server.
- ``clickhouse_url`` (``clickhouse_server``): a fresh database on it, dropped afterwards.
- ``chdb_url`` (``chdb``): a ``chdb://`` directory under ``tmp_path``.
- ``tansu_broker``: Tansu (in-memory, Kafka-compatible) for zero-setup checks.
- ``secure_kafka`` (``kafka``): a second Apache Kafka node in secure mode — SASL/SCRAM-SHA-512
  (and SASL_SSL with a CA made for the run), StandardAuthorizer, nothing allowed without an
  ACL — with a SCRAM user per role of ``infra.acl.Principals`` (``secure_kafka.security.users``
  holds the passwords). Only the security tests use it; every other test stays on the
  plaintext ``kafka_broker``.
- ``secure_topics`` (``kafka``): like ``topics`` on ``secure_kafka``, with the ACL table of
  this test's settings applied; the Settings connect as the super user
  (``secure_kafka.settings_for(role, settings)`` connects as a role).

A service that cannot start fails its tests with the service's log; it never skips them, so a
CI run without real services cannot pass quietly.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from fangxian.core.settings import Settings, Topics
from infra.acl import Principals, acl_table, apply_acls
from infra.clickhouse_server import ClickHouseServer
from infra.kafka_broker import KafkaBroker, KafkaSecurity
from infra.tansu import TansuBroker
from infra.topics import create_topics, topic_specs

log = logging.getLogger(__name__)

FIXTURE_MARKERS = {
    "kafka_broker": "kafka",
    "topics": "kafka",
    "secure_kafka": "kafka",
    "secure_topics": "kafka",
    "clickhouse_server": "clickhouse_server",
    "clickhouse_url": "clickhouse_server",
    "chdb_url": "chdb",
}
# fewer partitions than production keeps group rebalances quick on a small CI machine
TEST_EVENT_PARTITIONS = 3
TEST_REFERENCE_PARTITIONS = 2

_START_TIMES = pytest.StashKey[dict[str, float]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_START_TIMES] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    times = terminalreporter.config.stash.get(_START_TIMES, {})
    if times:
        terminalreporter.write_sep("-", "service start times")
        for name, seconds in times.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f} s")


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def kafka_broker(pytestconfig: pytest.Config) -> Iterator[KafkaBroker]:
    broker = KafkaBroker().start()
    pytestconfig.stash[_START_TIMES]["Apache Kafka broker"] = broker.start_seconds
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka(pytestconfig: pytest.Config) -> Iterator[KafkaBroker]:
    users = {user: secrets.token_hex(16) for user in Principals().roles().values()}
    broker = KafkaBroker(security=KafkaSecurity(users=users, tls=True)).start()
    pytestconfig.stash[_START_TIMES]["Apache Kafka broker (SASL/SCRAM, ACLs)"] = (
        broker.start_seconds
    )
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def secure_topics(secure_kafka: KafkaBroker) -> Iterator[Settings]:
    """Settings (as the super user) with this test's own topics and app id on the secure
    broker, and the ACL table of those names applied."""
    assert secure_kafka.security is not None
    name = unique_name()
    settings = secure_kafka.settings_for(
        secure_kafka.security.super_user,
        Settings(
            app_id=f"fangxian-{name}",
            topics=Topics().with_prefix(f"{name}."),
            event_partitions=TEST_EVENT_PARTITIONS,
            reference_partitions=TEST_REFERENCE_PARTITIONS,
        ),
    )
    specs = topic_specs(settings)
    create_topics(settings.kafka_bootstrap, specs, client=secure_kafka.admin_kwargs())
    apply_acls(settings, acl_table(settings))
    yield settings
    _delete_topics(
        settings.kafka_bootstrap, [spec.name for spec in specs], **secure_kafka.admin_kwargs()
    )


@pytest.fixture(scope="session")
def clickhouse_server(pytestconfig: pytest.Config) -> Iterator[ClickHouseServer]:
    server = ClickHouseServer().start()
    pytestconfig.stash[_START_TIMES][f"ClickHouse server {server.version}"] = server.start_seconds
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tansu_broker(pytestconfig: pytest.Config) -> Iterator[TansuBroker]:
    broker = TansuBroker().start()
    pytestconfig.stash[_START_TIMES]["Tansu broker"] = broker.start_seconds
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topics(kafka_broker: KafkaBroker) -> Iterator[Settings]:
    """Settings pointing at the session broker, with this test's own topics (and app id)."""
    name = unique_name()
    settings = Settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        app_id=f"fangxian-{name}",
        topics=Topics().with_prefix(f"{name}."),
        event_partitions=TEST_EVENT_PARTITIONS,
        reference_partitions=TEST_REFERENCE_PARTITIONS,
    )
    create_topics(kafka_broker.bootstrap, topic_specs(settings))
    yield settings
    _delete_topics(kafka_broker.bootstrap, [spec.name for spec in topic_specs(settings)])


def _delete_topics(bootstrap: str, names: list[str], **client: Any) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="fangxian-test-cleanup", **client
    )
    try:
        admin.delete_topics(names, raise_errors=False)
    except KafkaError as err:  # cleanup only: the session broker goes away anyway
        log.warning("could not delete test topics %s: %s", names, err)
    finally:
        admin.close()


@pytest.fixture
def clickhouse_url(clickhouse_server: ClickHouseServer) -> Iterator[str]:
    """A ``clickhouse://`` URL of a database created for this test alone."""
    database = unique_name("test_")
    client = clickhouse_server.client()
    try:
        client.execute(f"CREATE DATABASE {database}")
        yield clickhouse_server.url_for(database)
        client.execute(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.disconnect()


@pytest.fixture
def chdb_url(tmp_path: Path) -> str:
    """A ``chdb://`` URL of an empty directory for embedded ClickHouse."""
    return f"chdb://{tmp_path / 'chdb'}"
