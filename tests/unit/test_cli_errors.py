"""The CLI's error path without services: each exception kind → its exit code and two lines
(zh-CN, then English) naming what to check."""

from __future__ import annotations

import json
import re

import pytest
from kafka.errors import (
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from fangxian.cli import errors
from fangxian.cli.errors import KINDS, CliError, classify, masked_url
from fangxian.core.settings import SettingError, Settings
from infra.process import ServiceStartError
from sinks.errors import SinkError, SinkUnavailable

# a port nothing listens on: the classifier's TCP probe finds it closed
SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:1",
    clickhouse_url="clickhouse://fx:secret@127.0.0.1:1/fangxian",
    connect_timeout_s=0.5,
)


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as err:
        return err


def _bad_json() -> json.JSONDecodeError:
    try:
        json.loads("{")
    except json.JSONDecodeError as err:
        return err
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("err", "exit_code", "names"),
    [
        pytest.param(
            SettingError("FANGXIAN_PSEUDONYM_KEY", "is not set", "未设置"),
            3,
            "FANGXIAN_PSEUDONYM_KEY",
            id="missing setting → 3, names the variable",
        ),
        pytest.param(
            FileNotFoundError(2, "No such file or directory", "residents.csv"),
            4,
            "residents.csv",
            id="unreadable input file → 4, names the file",
        ),
        pytest.param(_bad_json(), 4, "JSON", id="invalid JSON → 4"),
        pytest.param(
            KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1"),
            5,
            "FANGXIAN_KAFKA_BOOTSTRAP",
            id="Kafka bootstrap timed out, port closed → 5",
        ),
        pytest.param(
            SaslAuthenticationFailedError("bad password"),
            6,
            "FANGXIAN_KAFKA_PASSWORD",
            id="SASL authentication refused → 6",
        ),
        pytest.param(
            TopicAuthorizationFailedError("gate.scans"),
            6,
            "fangxian acl show",
            id="topic not authorized → 6",
        ),
        pytest.param(
            UnknownTopicOrPartitionError("reference.residents"),
            7,
            "reference.residents",
            id="topic missing → 7, names the topic and topics create",
        ),
        pytest.param(
            SinkUnavailable("NetworkError: Code: 210. Connection refused"),
            8,
            "FANGXIAN_CLICKHOUSE_URL",
            id="ClickHouse unreachable → 8",
        ),
        pytest.param(
            SinkError("Code: 193. Wrong password for user fx", code=193),
            9,
            "FANGXIAN_CLICKHOUSE_URL",
            id="ClickHouse wrong password → 9",
        ),
        pytest.param(
            SinkError("Code: 60. Table fangxian.gate_scans doesn't exist", code=60),
            10,
            "fangxian db migrate",
            id="ClickHouse table missing → 10, says migrate",
        ),
        pytest.param(
            SinkError("Code: 81. Database fangxian doesn't exist", code=81),
            10,
            "fangxian db migrate",
            id="ClickHouse database missing → 10",
        ),
        pytest.param(
            _chained(RuntimeError("wrapped"), UnknownTopicOrPartitionError("alerts")),
            7,
            "alerts",
            id="the cause of a wrapping exception is found",
        ),
        pytest.param(
            ServiceStartError("Kafka broker exited with code 1: java: not found"),
            11,
            "Java 17",
            id="a bundled service did not start → 11",
        ),
        pytest.param(KeyboardInterrupt(), 130, "Ctrl-C", id="Ctrl-C → 130"),
        pytest.param(
            RuntimeError("nobody foresaw this"), 70, "-v", id="anything else is a bug → 70, -v"
        ),
    ],
)
def test_each_failure_kind_has_its_exit_code_and_names_what_to_check(
    err: BaseException, exit_code: int, names: str
) -> None:
    failure = classify(err, SETTINGS)
    zh, en = failure.lines()
    assert failure.exit_code == exit_code
    assert zh.startswith(f"✗ {failure.kind.zh}：")  # zh-CN first
    assert en.startswith(f"  {failure.kind.en}: ")  # English beside
    assert names in zh + en
    assert "\n" not in zh + en
    assert "secret" not in zh + en  # the ClickHouse password is masked


def test_exit_codes_are_distinct_and_avoid_the_shell_and_argparse_codes() -> None:
    codes = [kind.exit_code for kind in KINDS]
    assert len(set(codes)) == len(codes)
    assert not {errors.OK, errors.PROBLEMS_FOUND, errors.USAGE} & set(codes)


def test_a_cli_error_passes_through_unchanged() -> None:
    raised = CliError(errors.INPUT, "请检查文件 x", "check the file x")
    assert classify(raised, SETTINGS) is raised


def test_explaining_never_raises_even_when_the_explanation_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(err: BaseException, settings: Settings) -> CliError:
        raise ValueError("classifier bug")

    monkeypatch.setattr(errors, "_classify", broken)
    assert classify(KafkaTimeoutError("x"), SETTINGS).exit_code == errors.INTERNAL.exit_code


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(
            "clickhouse://fx:secret@h:9000/db", "clickhouse://fx:***@h:9000/db", id="password"
        ),
        pytest.param("clickhouse://fx@h:9000/db", "clickhouse://fx@h:9000/db", id="no password"),
        pytest.param("chdb://var/chdb", "chdb://var/chdb", id="chdb path"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        pytest.param(
            {"FANGXIAN_CONNECT_TIMEOUT_S": "soon"}, "FANGXIAN_CONNECT_TIMEOUT_S", id="float"
        ),
        pytest.param({"FANGXIAN_EVENT_PARTITIONS": "six"}, "FANGXIAN_EVENT_PARTITIONS", id="int"),
    ],
)
def test_an_unusable_setting_value_names_its_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingError) as raised:
        Settings.from_env(env)
    assert raised.value.setting == setting
    assert classify(raised.value, SETTINGS).exit_code == errors.SETTING.exit_code


def test_the_readme_lists_every_exit_code() -> None:
    from tests.cli_run import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)
    listed = {int(code) for code in rows}
    expected = {errors.OK, errors.PROBLEMS_FOUND, errors.USAGE} | {k.exit_code for k in KINDS}
    assert listed == expected
