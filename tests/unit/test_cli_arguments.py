"""Bad command-line values are argparse errors (exit 2, the usage and what is wrong) before any
service is contacted; a bad time-zone setting is a setting error (exit 3)."""

from __future__ import annotations

import pytest

from fangxian.cli import argtypes
from fangxian.reporting.forget import MIN_TOKEN_LENGTH
from tests.cli_run import run_cli

# nothing listens here: a command that got as far as connecting would fail differently (5 / 8)
OFFLINE = {
    "FANGXIAN_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "FANGXIAN_CLICKHOUSE_URL": "clickhouse://default@127.0.0.1:1/fx",
}

CONTACTS = ["contacts", "abcdefgh1234", "--from", "2020-02-03", "--to", "2020-02-04"]
REPORT = ["report", "--community", "55350102MA2Y0001XX", "--date", "2020-02-03"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(
            ["report", "--community", "55350102MA2Y0001XX", "--date", "2020-13-01"],
            "argument --date",
            id="report: a date that does not exist",
        ),
        pytest.param(
            ["report", "--county", "3501", "--date", "2020-02-03"],
            "argument --county",
            id="report: county code not 6 digits",
        ),
        pytest.param(
            ["contacts", "abcdefgh1234", "--from", "yesterday", "--to", "2020-02-03T09:00"],
            "argument --from",
            id="contacts: a time that is not ISO",
        ),
        pytest.param(
            [*CONTACTS, "--window", "ten minutes"],
            "argument --window",
            id="contacts: a window that is not a duration",
        ),
        pytest.param(
            [*REPORT, "--timezone", "Mars/Base"],
            "argument --timezone",
            id="report: unknown time zone",
        ),
        pytest.param(["forget", "abc"], "argument subject", id="forget: token too short"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], says: str) -> None:
    done = run_cli(args, OFFLINE, timeout_s=60)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "usage: fangxian" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_default_timezone_is_a_setting_error() -> None:
    env = {**OFFLINE, "FANGXIAN_DEFAULT_TIMEZONE": "Mars/Base"}
    done = run_cli(CONTACTS, env, timeout_s=60)
    assert done.returncode == 3, done.stderr
    assert "FANGXIAN_DEFAULT_TIMEZONE" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_the_cli_token_length_is_the_one_forget_enforces() -> None:
    assert argtypes.MIN_TOKEN_LENGTH == MIN_TOKEN_LENGTH
