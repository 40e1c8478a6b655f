"""The services the integration tests run on really start, and clients other than ours agree."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver.errors import ServerException
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from fangxian.core.settings import Settings
from infra.clickhouse_server import BI_READER, ClickHouseServer
from infra.kafka_broker import KafkaBroker
from infra.process import ServiceStartError
from infra.tansu import TansuBroker
from infra.topics import TopicSpec, create_topics, topic_specs

READONLY_ERROR_CODE = 164  # ClickHouse READONLY
MESSAGES = [(f"subject-{i}".encode(), f"scan-{i}".encode()) for i in range(20)]


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=15)
    finally:
        producer.close()


def consume_all(
    bootstrap: str, topic: str, expected: int, *, group: str | None = None
) -> list[tuple[bytes, bytes]]:
    """Read ``expected`` messages from the beginning of every partition of ``topic``.

    With ``group`` the consumer joins a group (subscribe); without, it assigns partitions itself.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    try:
        if group is None:
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            consumer.seek_to_beginning()
        else:
            consumer.subscribe([topic])
        received = []
        for record in consumer:
            received.append((record.key, record.value))
            if len(received) >= expected:
                break
        return received
    finally:
        consumer.close()


def describe(bootstrap: str, specs: list[TopicSpec]) -> dict[str, tuple[int, dict[str, str]]]:
    """Partition count and explicitly set config of each topic, as the broker reports them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        names = [spec.name for spec in specs]
        partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )["topic"]
    finally:
        admin.close()
    return {
        name: (partitions[name], {k: v["value"] for k, v in configs[name].items()})
        for name in names
    }


# --- Apache Kafka ---------------------------------------------------------------------------


def test_topics_have_the_specified_partitions_and_cleanup_config(topics: Settings) -> None:
    specs = topic_specs(topics)
    on_broker = describe(topics.kafka_bootstrap, specs)
    for spec in specs:
        partitions, config = on_broker[spec.name]
        assert partitions == spec.partitions, spec.name
        assert {k: config.get(k) for k in spec.config} == dict(spec.config), spec.name
    assert any(spec.compacted for spec in specs)


def test_create_topics_again_creates_nothing(topics: Settings) -> None:
    assert create_topics(topics.kafka_bootstrap, topic_specs(topics)) == []


def test_create_topics_can_refuse_existing_topics(topics: Settings) -> None:
    with pytest.raises(TopicAlreadyExistsError):
        create_topics(topics.kafka_bootstrap, topic_specs(topics)[:1], tolerate_existing=False)


def test_broker_does_not_create_topics_on_first_use(kafka_broker: KafkaBroker) -> None:
    missing = f"missing.{uuid.uuid4().hex}"
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_block_ms=1500)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(missing, b"lost")
    finally:
        producer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert missing not in admin.list_topics()
    finally:
        admin.close()


def test_kafka_python_round_trip_through_a_consumer_group(topics: Settings) -> None:
    produce(topics.kafka_bootstrap, topics.topics.gate_scans, MESSAGES)
    received = consume_all(
        topics.kafka_bootstrap, topics.topics.gate_scans, len(MESSAGES), group=topics.app_id
    )
    assert sorted(received) == sorted(MESSAGES)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (apt-get install kcat) not on PATH")
def test_kcat_produces_what_kafka_python_consumes(topics: Settings) -> None:
    lines = [f"{key.decode()}:{value.decode()}" for key, value in MESSAGES]
    subprocess.run(
        ["kcat", "-b", topics.kafka_bootstrap, "-t", topics.topics.alerts, "-P", "-K:"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=30,
    )
    received = consume_all(topics.kafka_bootstrap, topics.topics.alerts, len(MESSAGES))
    assert sorted(received) == sorted(MESSAGES)


# --- ClickHouse server ----------------------------------------------------------------------


def test_clickhouse_server_is_the_debian_18_server(clickhouse_server: ClickHouseServer) -> None:
    client = clickhouse_server.client()
    try:
        [(version,)] = client.execute("SELECT version()")
    finally:
        client.disconnect()
    assert version == clickhouse_server.version
    assert version.startswith("18.")


def test_clickhouse_url_database_is_usable(
    clickhouse_server: ClickHouseServer, clickhouse_url: str
) -> None:
    database = clickhouse_url.rsplit("/", 1)[1]
    client = clickhouse_server.client(database=database)
    try:
        client.execute("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
        client.execute("INSERT INTO t (x) VALUES", [(i,) for i in range(1000)])
        assert client.execute("SELECT count(), sum(x) FROM t") == [(1000, sum(range(1000)))]
    finally:
        client.disconnect()


@pytest.fixture
def readable_table(clickhouse_server: ClickHouseServer, clickhouse_url: str) -> Iterator[str]:
    database = clickhouse_url.rsplit("/", 1)[1]
    client = clickhouse_server.client(database=database)
    try:
        client.execute("CREATE TABLE alerts (alert_id String) ENGINE = MergeTree ORDER BY alert_id")
        client.execute("INSERT INTO alerts (alert_id) VALUES", [("a1",), ("a2",)])
        yield f"{database}.alerts"
    finally:
        client.disconnect()


def test_bi_reader_can_read(clickhouse_server: ClickHouseServer, readable_table: str) -> None:
    client = clickhouse_server.client(user=BI_READER)
    try:
        assert client.execute(f"SELECT count() FROM {readable_table}") == [(2,)]
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            "INSERT INTO {table} (alert_id) VALUES ('forged')", id="bi_reader cannot insert"
        ),
        pytest.param(
            "CREATE TABLE {table}_copy (x UInt8) ENGINE = Memory", id="bi_reader cannot create"
        ),
        pytest.param("DROP TABLE {table}", id="bi_reader cannot drop"),
        pytest.param("ALTER TABLE {table} DELETE WHERE 1", id="bi_reader cannot delete rows"),
    ],
)
def test_bi_reader_cannot_write(
    clickhouse_server: ClickHouseServer, readable_table: str, statement: str
) -> None:
    client = clickhouse_server.client(user=BI_READER)
    try:
        with pytest.raises(ServerException) as raised:
            client.execute(statement.format(table=readable_table))
    finally:
        client.disconnect()
    assert raised.value.code == READONLY_ERROR_CODE


# --- Tansu ----------------------------------------------------------------------------------


def test_tansu_round_trip_with_kafka_python(tansu_broker: TansuBroker) -> None:
    tansu = tansu_broker
    settings = Settings(kafka_bootstrap=tansu.bootstrap).replace(
        topics=Settings().topics.with_prefix(f"t{uuid.uuid4().hex[:8]}.")
    )
    specs = topic_specs(settings)
    created = create_topics(tansu.bootstrap, specs, broker_supports_configs=False)
    assert created == [spec.name for spec in specs]
    produce(tansu.bootstrap, settings.topics.gate_scans, MESSAGES)
    received = consume_all(tansu.bootstrap, settings.topics.gate_scans, len(MESSAGES))
    assert sorted(received) == sorted(MESSAGES)


# --- failing loudly -------------------------------------------------------------------------


def test_a_server_that_exits_at_once_fails_with_its_log() -> None:
    server = ClickHouseServer(command=["sh", "-c", "echo config rejected; exit 3", "--"])
    with pytest.raises(ServiceStartError, match=r"(?s)exited with code 3.*config rejected"):
        server.start()


def test_a_broker_without_kafka_jars_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ServiceStartError, match="StorageTool"):
        KafkaBroker(lib_dir=tmp_path).start()
