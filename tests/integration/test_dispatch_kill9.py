"""``kill -9`` of the dispatcher between handing a message to the robot and recording it.

The fake WeCom robot kills the dispatcher process (SIGKILL, a real subprocess) while it holds
the request for alert B, before answering. After a restart:
- B is sent again: the documented in-doubt window (SENDING without outcome) — the one place a
  message can repeat; its NOTIFIED is recorded once, as attempt 2;
- A, whose NOTIFIED was recorded before the kill, is not sent again (control), and its
  escalation timer survived: its level-2 message comes once, from the new process;
- C, produced while no dispatcher ran, is delivered once: nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fangxian.core.settings import Settings
from infra.fake_bots import FakeBots, Received
from tests.integration.dispatch_harness import (
    EXAMPLES,
    AlertProducer,
    dispatch_settings,
    env_of,
    fever_alert,
    load_example_roster,
    read_actions,
    wait_for,
)

LEVEL_2_AFTER_S = 25


class BotsThread:
    """The fake robots on their own event loop, so the test can block on subprocesses."""

    def __init__(self) -> None:
        self.bots = FakeBots()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeBots:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.bots.start(), self._loop).result(10)
        return self.bots

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.bots.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def bots() -> Iterator[FakeBots]:
    with BotsThread() as running:
        yield running


def policy_file(tmp_path: Path) -> Path:
    (policy,) = json.loads((EXAMPLES / "escalation-example.json").read_text(encoding="utf-8"))
    policy["steps"] = [
        {"level": 1, "after_s": 0, "channels": ["wecom:east-gate"]},
        {"level": 2, "after_s": LEVEL_2_AFTER_S, "channels": ["webhook:console"]},
    ]
    policy["repeat_interval_s"] = 3600
    path = tmp_path / "escalation.json"
    path.write_text(json.dumps([policy]), encoding="utf-8")
    return path


def start_dispatcher(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fangxian.cli", "dispatch", "--no-action-sink"],
        env=env_of(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def messages_for(bots: FakeBots, kind: str, marker: str) -> list[Received]:
    def text(r: Received) -> str:
        if kind == "wecom":
            return str(r.payload["text"]["content"])
        return "\n".join(r.payload.get("lines", []))

    return [r for r in bots.of_kind(kind) if marker in text(r)]


def test_kill_9_between_send_and_record(bots: FakeBots, topics: Settings, tmp_path: Path) -> None:
    settings = dispatch_settings(topics, tmp_path, bots)
    load_example_roster(settings, policy_file(tmp_path))
    log = tmp_path / "dispatcher.log"
    producer = AlertProducer(settings)
    now = int(time.time() * 1000)
    alerts = {name: fever_alert(now, message_zh=f"标记 MARK-{name}") for name in "ABC"}
    ids = {a["alert_id"]: name for name, a in alerts.items()}
    first = start_dispatcher(settings, log)
    killed: list[int] = []

    def kill_on_b(item: Received) -> None:
        if item.kind == "wecom" and "MARK-B" in item.payload["text"]["content"] and not killed:
            os.kill(first.pid, signal.SIGKILL)  # the robot has the message; no answer goes back
            first.wait(10)
            killed.append(first.pid)

    bots.on_request = kill_on_b
    second: subprocess.Popen[bytes] | None = None
    try:
        producer.send(alerts["A"])
        wait_for(lambda: messages_for(bots, "wecom", "MARK-A"), 90, "A at the robot")

        def a_notified() -> bool:
            return any(
                r["action"] == "NOTIFIED" and ids.get(r["alert_id"]) == "A"
                for r in read_actions(settings, timeout_s=1.0)
            )

        wait_for(a_notified, 30, "A's NOTIFIED record", step_s=0.5)
        producer.send(alerts["B"])
        wait_for(lambda: killed, 30, "the kill while B is at the robot")
        assert first.returncode == -signal.SIGKILL
        producer.send(alerts["C"])  # nobody is running now
        second = start_dispatcher(settings, log)
        wait_for(lambda: len(messages_for(bots, "wecom", "MARK-B")) >= 2, 90, "B resent")
        wait_for(lambda: messages_for(bots, "wecom", "MARK-C"), 30, "C delivered")
        wait_for(lambda: messages_for(bots, "webhook", "MARK-A"), LEVEL_2_AFTER_S + 60, "A level 2")
        wait_for(lambda: messages_for(bots, "webhook", "MARK-C"), LEVEL_2_AFTER_S + 30, "C level 2")
        time.sleep(2.0)  # anything sent twice would be here by now
    finally:
        producer.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    counts = {n: len(messages_for(bots, "wecom", f"MARK-{n}")) for n in "ABC"}
    assert counts == {"A": 1, "B": 2, "C": 1}, log.read_text(errors="replace")[-3000:]
    level_2 = {n: len(messages_for(bots, "webhook", f"MARK-{n}")) for n in "ABC"}
    assert level_2["A"] == 1 and level_2["C"] == 1, level_2
    assert bots.duplicate_keys == 0
    actions: dict[str, list[dict[str, Any]]] = {}
    for record in read_actions(settings):
        if record["alert_id"] in ids:
            actions.setdefault(ids[record["alert_id"]], []).append(record)

    def level_1(name: str, kind: str) -> list[int]:
        return [
            r["attempt"]
            for r in actions[name]
            if r["action"] == kind and r["channel"] == "wecom:east-gate"
        ]

    assert level_1("B", "SENDING") == [1, 2] and level_1("B", "NOTIFIED") == [2]
    assert level_1("A", "SENDING") == [1] and level_1("A", "NOTIFIED") == [1]
    assert level_1("C", "NOTIFIED") == [1]
    for name in "ABC":
        assert [r["action"] for r in actions[name]].count("ROUTED") == 1, name
    assert "open alerts, 1 in-doubt deliveries to resend" in log.read_text(errors="replace")
