"""``fangxian worker`` supervises the dispatcher beside the two stages, and only with its keys:
without them the supervisor says so (zh-CN first) instead of restarting a child that can only
fail. The supervisor itself runs with an injected ``popen`` (fake children, real loop)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fangxian.core.settings import SettingError, Settings
from fangxian.worker import (
    dispatch_writes_actions,
    supervise,
    supervised_roles,
    worker_children,
)

KEYS = {"roster_key": "r-key", "ack_link_key": "a-key"}


def _settings(keys: dict[str, str]) -> Settings:
    return Settings(
        roster_key=keys.get("roster_key", ""), ack_link_key=keys.get("ack_link_key", "")
    )


class FakeProc:
    """A child process: alive until ``die()``; records the signals it was sent."""

    _next_pid = 1000

    def __init__(self, argv: list[str]) -> None:
        FakeProc._next_pid += 1
        self.pid = FakeProc._next_pid
        self.argv = argv
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def die(self, code: int = 1) -> None:
        self.returncode = code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


def _role(proc: FakeProc) -> str:
    return proc.argv[proc.argv.index("--role") + 1]


@pytest.mark.parametrize(
    ("keys", "roles", "warned"),
    [
        pytest.param(KEYS, ["decide", "sink", "dispatch"], False, id="keys-set-all-three"),
        pytest.param({"ack_link_key": "a"}, ["decide", "sink"], True, id="no-roster-key"),
        pytest.param({"roster_key": "r"}, ["decide", "sink"], True, id="no-ack-link-key"),
        pytest.param({}, ["decide", "sink"], True, id="no-keys"),
    ],
)
def test_supervised_roles_need_the_dispatch_keys(
    keys: dict[str, str], roles: list[str], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fangxian.on_duty"):
        assert supervised_roles(_settings(keys)) == roles
    lines = [r.getMessage() for r in caplog.records if r.name == "fangxian.on_duty"]
    assert bool(lines) is warned
    if warned:
        line = lines[0]
        assert line.index("值班派单未启动") < line.index("dispatcher NOT started")
        for env, attr in (
            ("FANGXIAN_ROSTER_KEY", "roster_key"),
            ("FANGXIAN_ACK_LINK_KEY", "ack_link_key"),
        ):
            assert (env in line) is (attr not in keys)
        assert "r-key" not in line and "a-key" not in line


def test_supervisor_starts_and_restarts_the_dispatch_child() -> None:
    children = worker_children(_settings(KEYS))
    spawned: list[FakeProc] = []

    def popen(argv: list[str], **_kw: Any) -> FakeProc:
        proc = FakeProc(argv)
        spawned.append(proc)
        return proc

    polls = {"n": 0}

    def should_stop() -> bool:
        polls["n"] += 1
        if polls["n"] == 3:  # the dispatcher crashes once the three are up
            next(p for p in spawned if _role(p) == "dispatch").die(1)
        return sum(_role(p) == "dispatch" for p in spawned) >= 2 or polls["n"] > 500

    for child in children:
        child.backoff = 0.0  # restart at once (the back-off itself is not under test)
    supervise(children, popen=popen, poll_s=0.01, should_stop=should_stop)  # type: ignore[arg-type]
    roles = [_role(p) for p in spawned]
    assert roles[:3] == ["decide", "sink", "dispatch"]
    assert roles.count("dispatch") == 2, roles  # restarted by the supervisor, nobody else
    assert roles.count("decide") == roles.count("sink") == 1
    assert spawned[2].argv[-3:] == ["worker", "--role", "dispatch"]
    live = [p for p in spawned if p.returncode != 1]
    assert all(p.signals for p in live)  # every live child got SIGTERM on stop


def test_role_dispatch_without_keys_is_a_setting_error() -> None:
    from fangxian.cli.worker import preflight

    with pytest.raises(SettingError) as err:
        preflight(Settings(roster_key="r"), "dispatch")  # before any network
    assert err.value.setting == "FANGXIAN_ACK_LINK_KEY"
    assert err.value.problem_zh.startswith("未设置")


@pytest.mark.parametrize(
    ("url", "writes"),
    [
        pytest.param("clickhouse://u:p@clickhouse:9000/fangxian", True, id="server"),
        pytest.param("chdb:///tmp/fx-chdb", False, id="embedded-chdb-belongs-to-the-sink"),
    ],
)
def test_the_dispatch_action_sink_runs_only_against_a_server(url: str, writes: bool) -> None:
    assert dispatch_writes_actions(Settings(clickhouse_url=url)) is writes
