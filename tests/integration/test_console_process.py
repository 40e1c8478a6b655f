"""``fangxian console`` as its own process (uvicorn, its own ClickHouse reader and Kafka
clients): it comes up, answers the sign-in page and its health check, refuses data without a
session, and shuts down gracefully on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fangxian.core.settings import Settings
from infra.ports import free_port
from infra.tansu import TansuBroker
from infra.topics import create_topics, topic_specs

ROOT = Path(__file__).resolve().parents[2]


def test_console_process_serves_and_stops(tansu_broker: TansuBroker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=tansu_broker.bootstrap, app_id="console-process")
    settings = settings.replace(topics=settings.topics.with_prefix("cp."))
    create_topics(tansu_broker.bootstrap, topic_specs(settings), broker_supports_configs=False)
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        FANGXIAN_KAFKA_BOOTSTRAP=tansu_broker.bootstrap,
        FANGXIAN_CLICKHOUSE_URL=f"chdb://{tmp_path / 'chdb'}",
        FANGXIAN_CONSOLE_SECRET="process-test-console-secret",
        FANGXIAN_CONSOLE_CREDENTIALS_FILE=str(tmp_path / "creds.json"),
        FANGXIAN_CONSOLE_PORT=str(port),
        **{
            f"FANGXIAN_TOPIC_{name.upper()}": "cp." + getattr(Settings().topics, name)
            for name in ("staff", "alerts", "alert_actions", "gate_decisions")
        },
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "fangxian.cli", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    console = subprocess.Popen(
        [sys.executable, "-m", "fangxian.cli", "console"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        health: dict[str, object] = {}
        while not health:
            assert console.poll() is None, console.stdout.read() if console.stdout else ""
            assert time.monotonic() < deadline, "console did not come up"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                    health = json.loads(answer.read())
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert health["ok"] is True
        with urllib.request.urlopen(f"{base}/login", timeout=5) as answer:
            page = answer.read().decode()
            assert "人员编号 Staff id" in page
            assert "strict" in answer.headers["set-cookie"].lower()
            assert "script-src 'self'" in answer.headers["content-security-policy"]
        try:
            urllib.request.urlopen(f"{base}/api/alerts", timeout=5)
            raise AssertionError("data without a session")
        except urllib.error.HTTPError as err:
            assert err.code == 401
    finally:
        console.send_signal(signal.SIGTERM)
        status = console.wait(timeout=30)
    log = console.stdout.read() if console.stdout else ""
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit by SIGTERM)
    assert status in (0, -signal.SIGTERM), log[-2000:]
    assert "Finished server process" in log, log[-2000:]
