"""Every foreseeable failure of a ``fangxian`` command ends in two lines (zh-CN, English) naming
what to check, with its own exit code and no traceback — against real services: a closed port, a
broker that was stopped, a missing topic, a wrong ClickHouse password, an unmigrated database,
invalid files. Each fault has a control: the same command where the fault is absent."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fangxian.core.settings import Settings, Topics
from infra.clickhouse_server import ClickHouseServer
from infra.kafka_broker import KafkaBroker
from infra.ports import free_port
from infra.topics import create_topics, topic_specs
from tests.cli_run import ROOT, run_cli, settings_env

EXAMPLE = ROOT / "docs" / "examples" / "residents-example.csv"
KEY = {"FANGXIAN_PSEUDONYM_KEY": "test-only-key-0123456789"}
CLIENT_DEFAULT_TIMEOUT_S = 30  # what kafka-python waited before the connect_timeout_s setting


def assert_explained(done: subprocess.CompletedProcess[str], code: int, names: str) -> None:
    """Exit ``code``; stderr ends in a zh-CN line and an English line, one names ``names``."""
    assert done.returncode == code, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) >= 2, done.stderr
    zh, en = lines[-2], lines[-1]
    assert zh.startswith("✗ ") and en.startswith("  "), done.stderr
    assert names in zh and names in en, done.stderr
    assert "Traceback" not in done.stderr


@dataclass(frozen=True)
class Case:
    args: list[str]
    env: dict[str, str]
    code: int
    names: str


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inputs")
    files = {
        "no header": base / "wrong-columns.csv",
        "empty": base / "empty.csv",
        "bad json": base / "rules.json",
        "binary": base / "binary.csv",
    }
    files["no header"].write_text("名字,电话\n张三,13800000001\n", encoding="utf-8")
    files["empty"].write_text("", encoding="utf-8")
    files["bad json"].write_text('{"community_id": ', encoding="utf-8")
    files["binary"].write_bytes(b"\x00\xff\xfe\x00" * 64)
    return files


@pytest.mark.parametrize(
    ("make", "code", "names"),
    [
        pytest.param(
            lambda f: (["load", "residents", str(f["no header"])], KEY),
            4,
            "wrong-columns.csv",
            id="CSV without the required columns → 4, names the file",
        ),
        pytest.param(
            lambda f: (["load", "residents", str(f["empty"])], KEY),
            4,
            "empty.csv",
            id="empty CSV → 4",
        ),
        pytest.param(
            lambda f: (["load", "residents", str(f["empty"].with_name("absent.csv"))], KEY),
            4,
            "absent.csv",
            id="file that does not exist → 4",
        ),
        pytest.param(
            lambda f: (["load", "rules", str(f["bad json"])], {}),
            4,
            "rules.json",
            id="rules file that is not JSON → 4",
        ),
        pytest.param(
            lambda f: (["load", "residents", str(EXAMPLE)], {}),
            3,
            "FANGXIAN_PSEUDONYM_KEY",
            id="register without a pseudonym key → 3",
        ),
        pytest.param(
            lambda f: (["db", "migrate"], {"FANGXIAN_CONNECT_TIMEOUT_S": "soon"}),
            3,
            "FANGXIAN_CONNECT_TIMEOUT_S",
            id="setting that is not a number → 3",
        ),
        pytest.param(
            lambda f: (["db", "migrate"], {"FANGXIAN_CLICKHOUSE_URL": "mysql://h/db"}),
            3,
            "FANGXIAN_CLICKHOUSE_URL",
            id="ClickHouse URL of an unknown scheme → 3",
        ),
    ],
)
def test_invalid_input_and_settings_without_services(
    bad_files: dict[str, Path],
    make: Callable[[dict[str, Path]], tuple[list[str], dict[str, str]]],
    code: int,
    names: str,
) -> None:
    args, env = make(bad_files)
    assert_explained(run_cli(["--bootstrap", "127.0.0.1:1", *args], env), code, names)


def test_control_a_valid_register_passes_dry_run() -> None:
    done = run_cli(["load", "--dry-run", "residents", str(EXAMPLE)], KEY)
    assert done.returncode == 1, done.stderr  # the example has deliberately bad rows: code 1
    assert "检查通过 checked: 7 records" in done.stdout
    assert "Traceback" not in done.stderr


def _closed_port() -> int:
    return free_port()  # free = nothing listens there


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param(["topics", "create"], "FANGXIAN_KAFKA_BOOTSTRAP", id="topics create"),
        pytest.param(["load", "residents", str(EXAMPLE)], "FANGXIAN_KAFKA_BOOTSTRAP", id="load"),
    ],
)
def test_kafka_on_a_closed_port_is_reported_within_the_connect_timeout(
    args: list[str], names: str
) -> None:
    env = {**KEY, "FANGXIAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"}
    env["FANGXIAN_CONNECT_TIMEOUT_S"] = "2"
    began = time.monotonic()
    done = run_cli(args, env)
    elapsed = time.monotonic() - began
    assert_explained(done, 5, names)
    assert elapsed < CLIENT_DEFAULT_TIMEOUT_S  # 2 s connect timeout + start-up, not 30 s


def test_verbose_adds_the_traceback_and_keeps_the_two_lines() -> None:
    env = {"FANGXIAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"}
    env["FANGXIAN_CONNECT_TIMEOUT_S"] = "1"
    quiet = run_cli(["topics", "create"], env)
    loud = run_cli(["topics", "create", "-v"], env)
    assert_explained(quiet, 5, "FANGXIAN_KAFKA_BOOTSTRAP")
    assert loud.returncode == 5
    assert "Traceback" in loud.stderr and "KafkaTimeoutError" in loud.stderr
    assert loud.stderr.strip().splitlines()[-2:] == quiet.stderr.strip().splitlines()[-2:]


@pytest.fixture
def stoppable_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_stopped_broker_is_reported_as_unreachable(
    stoppable_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap=stoppable_broker.bootstrap,
        event_partitions=1,
        reference_partitions=1,
        connect_timeout_s=3,
    )
    create_topics(settings.kafka_bootstrap, topic_specs(settings))
    env = {**settings_env(settings), **KEY}
    control = run_cli(["load", "residents", str(EXAMPLE)], env)
    assert control.returncode == 1, control.stderr  # produced (the example's bad rows: 1)
    assert "已发送 produced 7" in control.stdout
    stoppable_broker.stop()
    assert_explained(run_cli(["load", "residents", str(EXAMPLE)], env), 5, settings.kafka_bootstrap)


def test_a_missing_topic_is_named_with_the_command_that_creates_it(topics: Settings) -> None:
    env = {**settings_env(topics), **KEY}
    control = run_cli(["load", "residents", str(EXAMPLE)], env)
    assert control.returncode == 1 and "已发送 produced 7" in control.stdout, control.stderr
    missing = topics.replace(topics=Topics().with_prefix("absent-" + topics.app_id + "."))
    done = run_cli(["load", "residents", str(EXAMPLE)], {**settings_env(missing), **KEY})
    assert_explained(done, 7, missing.topics.residents)
    assert "fangxian topics create" in done.stderr


def test_clickhouse_on_a_closed_port(tmp_path: Path) -> None:
    env = {"FANGXIAN_CLICKHOUSE_URL": f"clickhouse://default@127.0.0.1:{_closed_port()}/fx"}
    assert_explained(run_cli(["db", "migrate"], env), 8, "FANGXIAN_CLICKHOUSE_URL")


def test_a_wrong_clickhouse_password_is_an_authentication_failure(
    clickhouse_server: ClickHouseServer, clickhouse_url: str
) -> None:
    control = run_cli(["db", "migrate"], {"FANGXIAN_CLICKHOUSE_URL": clickhouse_url})
    assert control.returncode == 0, control.stderr
    wrong = clickhouse_url.replace("clickhouse://default@", "clickhouse://default:not-it@")
    done = run_cli(["db", "migrate"], {"FANGXIAN_CLICKHOUSE_URL": wrong})
    assert_explained(done, 9, "FANGXIAN_CLICKHOUSE_URL")
    assert "not-it" not in done.stderr  # the password is never printed


def test_an_unmigrated_database_says_to_migrate(clickhouse_url: str) -> None:
    env = {"FANGXIAN_CLICKHOUSE_URL": clickhouse_url}
    report = ["report", "--community", "55350102MA2Y0001XX", "--date", "2020-02-03"]
    assert_explained(run_cli(report, env), 10, "fangxian db migrate")
    assert run_cli(["db", "migrate"], env).returncode == 0
    control = run_cli(report, env)
    assert control.returncode == 0, control.stderr


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never speaks Kafka."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


def test_an_open_port_that_does_not_speak_kafka_is_a_handshake_failure(
    silent_listener: int,
) -> None:
    env = {"FANGXIAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{silent_listener}"}
    env["FANGXIAN_CONNECT_TIMEOUT_S"] = "2"
    done = run_cli(["topics", "create"], env)
    assert_explained(done, 6, "FANGXIAN_KAFKA_SECURITY_PROTOCOL")
    assert "FANGXIAN_KAFKA_BOOTSTRAP" in done.stderr


def test_the_worker_stops_at_once_when_kafka_is_unreachable_or_a_topic_missing(
    topics: Settings,
) -> None:
    closed = {"FANGXIAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"}
    closed["FANGXIAN_CONNECT_TIMEOUT_S"] = "2"
    assert_explained(run_cli(["worker"], closed, timeout_s=60), 5, "FANGXIAN_KAFKA_BOOTSTRAP")
    missing = topics.replace(topics=Topics().with_prefix("absent-" + topics.app_id + "."))
    done = run_cli(["worker"], settings_env(missing), timeout_s=60)
    assert_explained(done, 7, missing.topics.gate_scans)


def test_a_refused_kafka_password_is_an_authentication_failure(
    secure_kafka: KafkaBroker, secure_topics: Settings
) -> None:
    from infra.acl import Principals

    loader = secure_kafka.settings_for(Principals().loader, secure_topics)
    env = {**settings_env(loader.replace(connect_timeout_s=3)), **KEY}
    control = run_cli(["load", "residents", str(EXAMPLE)], env)
    assert control.returncode == 1 and "已发送 produced 7" in control.stdout, control.stderr
    wrong = {**env, "FANGXIAN_KAFKA_PASSWORD": "not-the-password"}
    done = run_cli(["load", "residents", str(EXAMPLE)], wrong)
    assert_explained(done, 6, "FANGXIAN_KAFKA_PASSWORD")
    assert "not-the-password" not in done.stderr
