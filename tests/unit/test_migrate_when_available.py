"""``sinks.migrate.migrate_when_available``: the sink (and the dispatcher's action writer) waits
for ClickHouse instead of failing its start — with back-off, a log line zh-CN first with English
beside, once and then at most every ``remind_every_s``, and a gauge via ``on_available``."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

import pytest

from sinks import SinkError, SinkUnavailable
from sinks.migrate import migrate_when_available

migrate_module = importlib.import_module("sinks.migrate")  # ``sinks.migrate`` is also a function


def _flaky(monkeypatch: pytest.MonkeyPatch, failures: int, error: Exception) -> list[int]:
    """``migrate`` fails ``failures`` times with ``error``, then applies one migration."""
    calls: list[int] = []

    def migrate(writer: Any, *, retention_days: int) -> list[str]:
        calls.append(retention_days)
        if len(calls) <= failures:
            raise error
        return ["0001_events"]

    monkeypatch.setattr(migrate_module, "migrate", migrate)
    return calls


def test_waits_through_an_outage_then_migrates(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _flaky(monkeypatch, 6, SinkUnavailable("NetworkError: Code: 210. Connection refused"))
    states: list[bool] = []
    with caplog.at_level(logging.DEBUG, logger="sinks.migrate"):
        applied = asyncio.run(
            migrate_when_available(
                object(),  # type: ignore[arg-type]
                retention_days=30,
                on_available=states.append,
                first_backoff_s=0.001,
                max_backoff_s=0.004,
                remind_every_s=3600,
            )
        )
    assert applied == ["0001_events"]
    assert calls == [30] * 7
    assert states == [False] * 6 + [True]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # the outage once, its end once: not one per try
    first, last = warnings
    assert first.startswith("ClickHouse 不可用，写入阶段等待重试 / ClickHouse unavailable, sink")
    assert "Connection refused" in first
    assert last.startswith("ClickHouse 已可用") and "0001_events" in last


def test_a_long_outage_is_recalled_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _flaky(monkeypatch, 40, SinkUnavailable("timed out"))
    with caplog.at_level(logging.WARNING, logger="sinks.migrate"):
        asyncio.run(
            migrate_when_available(
                object(),  # type: ignore[arg-type]
                first_backoff_s=0.001,
                max_backoff_s=0.001,
                remind_every_s=0.02,
            )
        )
    reminders = [r.getMessage() for r in caplog.records if "仍不可用" in r.getMessage()]
    assert 1 <= len(reminders) < 20, reminders  # 40 failed tries, far fewer lines


def test_stopping_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    _flaky(monkeypatch, 10**6, SinkUnavailable("Connection refused"))

    async def main() -> list[str] | None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await migrate_when_available(object(), stopping=stop)  # type: ignore[arg-type]

    assert asyncio.run(main()) is None


def test_a_refusal_that_is_no_outage_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _flaky(monkeypatch, 5, SinkError("Code: 516. Authentication failed"))
    with pytest.raises(SinkError, match="Authentication"):
        asyncio.run(migrate_when_available(object()))  # type: ignore[arg-type]
    assert len(calls) == 1
