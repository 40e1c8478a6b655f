"""``fangxian doctor`` against real services: a healthy set-up (Kafka with every topic, a migrated
ClickHouse, a key) passes with exit 0; each broken one (a topic missing, the database not
migrated, no key, Kafka unreachable) fails with exit 1 on exactly the row that is wrong, and that
row says how to fix it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from fangxian.core.settings import Settings
from infra.ports import free_port
from sinks import migrate, open_writer
from tests.cli_run import run_cli, settings_env

KEY = "test-only-key-0123456789"


def doctor(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]], str]:
    done = run_cli(["doctor", "--format", "json"], env, timeout_s=180)
    assert "Traceback" not in done.stderr, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    return done.returncode, rows, done.stderr


def failing(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: row for name, row in rows.items() if row["status"] == "fail"}


@pytest.fixture
def healthy(topics: Settings, clickhouse_url: str) -> dict[str, str]:
    writer = open_writer(clickhouse_url)
    try:
        migrate(writer)
    finally:
        writer.close()
    settings = topics.replace(clickhouse_url=clickhouse_url, connect_timeout_s=3)
    return {**settings_env(settings), "FANGXIAN_PSEUDONYM_KEY": KEY}


def test_a_healthy_setup_passes(healthy: dict[str, str], topics: Settings) -> None:
    code, rows, stderr = doctor(healthy)
    assert failing(rows) == {}, rows
    assert code == 0, stderr
    names = list(rows)
    assert names[0] == "Kafka 可达 reachable" and "Kafka 4." in rows[names[0]]["result"]
    for spec_topic in (topics.topics.gate_scans, topics.topics.residents):
        assert rows[f"主题 topic {spec_topic}"]["status"] == "ok"
    assert rows["ClickHouse 可达 reachable"]["status"] == "ok"
    assert rows["数据库迁移 migrations"]["status"] == "ok"
    assert rows["假名化密钥 pseudonym key"]["status"] == "ok"
    assert rows["时钟 clock vs broker"]["status"] == "ok"
    assert "broker − this machine" in rows["时钟 clock vs broker"]["result"]
    # groups that never ran are worth a look, not a failure
    assert rows[f"消费组 group {topics.app_id}-decide"]["status"] == "warn"
    order = [n.split(" ")[0] for n in names]
    assert order.index("Kafka") < order.index("主题") < order.index("消费组")
    assert order.index("消费组") < order.index("ClickHouse") < order.index("数据库迁移")
    assert order.index("假名化密钥") < order.index("时钟") < order.index("凭据与")


def _drop_topic(env: dict[str, str], topic_env: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=env["FANGXIAN_KAFKA_BOOTSTRAP"])
    try:
        admin.delete_topics([env[topic_env]])
    finally:
        admin.close()


def _recreate_wrong(env: dict[str, str], topic_env: str) -> None:
    """The topic again, with one partition and the other cleanup policy."""
    _drop_topic(env, topic_env)
    admin = KafkaAdminClient(bootstrap_servers=env["FANGXIAN_KAFKA_BOOTSTRAP"])
    try:
        deadline = time.monotonic() + 30
        while True:  # deletion is asynchronous: retry until the name is free
            try:
                admin.create_topics(
                    {
                        env[topic_env]: {
                            "num_partitions": 1,
                            "replication_factor": 1,
                            "configs": {"cleanup.policy": "compact"},
                        }
                    }
                )
                return
            except TopicAlreadyExistsError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()


def _unmigrated(env: dict[str, str]) -> None:
    env["FANGXIAN_CLICKHOUSE_URL"] = env["FANGXIAN_CLICKHOUSE_URL"].rsplit("/", 1)[0] + "/nodb_x"


@pytest.mark.parametrize(
    ("breaks", "row", "fix"),
    [
        pytest.param(
            lambda env: _drop_topic(env, "FANGXIAN_TOPIC_ALERTS"),
            "主题 topic {FANGXIAN_TOPIC_ALERTS}",
            "fangxian topics create",
            id="a topic is missing",
        ),
        pytest.param(
            lambda env: _recreate_wrong(env, "FANGXIAN_TOPIC_GATE_DECISIONS"),
            "主题 topic {FANGXIAN_TOPIC_GATE_DECISIONS}",
            "kafka-configs --alter",
            id="a topic with the wrong partitions and cleanup policy",
        ),
        pytest.param(
            _unmigrated, "数据库迁移 migrations", "fangxian db migrate", id="database not migrated"
        ),
        pytest.param(
            lambda env: env.pop("FANGXIAN_PSEUDONYM_KEY"),
            "假名化密钥 pseudonym key",
            "FANGXIAN_PSEUDONYM_KEY",
            id="no pseudonym key",
        ),
    ],
)
def test_a_broken_setup_fails_on_the_row_that_is_wrong(
    healthy: dict[str, str], breaks: Callable[[dict[str, str]], object], row: str, fix: str
) -> None:
    env = dict(healthy)
    breaks(env)
    code, rows, _ = doctor(env)
    row = row.format(**healthy)
    assert code == 1
    assert set(failing(rows)) == {row}, rows
    assert fix in rows[row]["fix"]


def test_kafka_unreachable_fails_first_and_skips_what_needs_it(healthy: dict[str, str]) -> None:
    env = {**healthy, "FANGXIAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    env["FANGXIAN_CONNECT_TIMEOUT_S"] = "2"
    code, rows, _ = doctor(env)
    assert code == 1
    assert rows["Kafka 可达 reachable"]["status"] == "fail"
    assert "FANGXIAN_KAFKA_BOOTSTRAP" in rows["Kafka 可达 reachable"]["fix"]
    assert rows["主题 topics"]["status"] == "skip"
    assert rows["ClickHouse 可达 reachable"]["status"] == "ok"  # the rest is still checked


def test_the_table_shows_marks_and_fixes(healthy: dict[str, str]) -> None:
    env = dict(healthy)
    env.pop("FANGXIAN_PSEUDONYM_KEY")
    done = run_cli(["doctor"], env, timeout_s=180)
    assert done.returncode == 1
    assert "✔" in done.stdout and "✗" in done.stdout
    assert "FANGXIAN_PSEUDONYM_KEY" in done.stdout
    assert "✗ 1 项未通过 check(s) failed" in done.stdout
