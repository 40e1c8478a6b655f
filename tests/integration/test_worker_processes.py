"""``fangxian worker`` as an operator starts it (a subprocess configured only by environment):
a supervisor with a decide and a sink child. It decides gate scans from real Kafka, writes
ClickHouse, serves /metrics of each stage, relays alerts to the on-duty log, restarts a child
that is killed, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import fields
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from fangxian.core.settings import Settings, Topics
from fangxian.ingest.produce import RecordProducer
from infra.ports import free_port
from schemas import Codec
from sinks import open_writer
from tests.integration.pipeline_harness import fresh_example

ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("FANGXIAN_ROSTER_KEY", "FANGXIAN_ACK_LINK_KEY"):
        env.pop(key, None)  # no dispatcher keys: the supervisor runs the two stages only
    env.update(
        FANGXIAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        FANGXIAN_CLICKHOUSE_URL=settings.clickhouse_url,
        FANGXIAN_APP_ID=settings.app_id,
        FANGXIAN_WEB_PORT=str(settings.web_port),
        FANGXIAN_METRICS_PORT=str(settings.metrics_port),
        FANGXIAN_SINK_METRICS_PORT=str(settings.sink_metrics_port),
        FANGXIAN_SINK_FLUSH_S="0.3",
        PYTHONPATH=str(ROOT),
    )
    for f in fields(Topics):
        env["FANGXIAN_TOPIC_" + f.name.upper()] = getattr(settings.topics, f.name)
    return env


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return str(resp.read().decode())


def _children(pid: int) -> dict[str, int]:
    """role -> pid of the supervisor's children (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"--role" in cmd:
            found[cmd[cmd.index(b"--role") + 1].decode()] = int(entry.name)
    return found


def _wait(what: str, cond: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout_s}s")


def test_fangxian_worker_decides_stores_and_serves_metrics(
    topics: Settings, clickhouse_url: str, tmp_path: Path
) -> None:
    settings = topics.replace(
        clickhouse_url=clickhouse_url,
        web_port=free_port(),
        metrics_port=free_port(),
        sink_metrics_port=free_port(),
    )
    red = fresh_example("GateScan", "resident_qr", health_code="RED")
    producer = RecordProducer(settings)
    producer.send("GateScan", red)
    producer.close()

    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fangxian.cli", "worker"],
            env=_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        consumer = KafkaConsumer(
            settings.topics.gate_decisions,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=90_000,
        )
        decision = Codec().decode("GateDecision", next(iter(consumer)).value)
        consumer.close()
        assert decision["event_id"] == red["event_id"]
        assert decision["decision"] == "DENY"
        assert "HEALTH_CODE_RED" in decision["reasons"]

        deadline = time.monotonic() + 60
        sink_text = ""
        while time.monotonic() < deadline:
            sink_text = _metrics(settings.sink_metrics_port)
            if 'fangxian_rows_written_total{table="gate_scans"} 1.0' in sink_text:
                break
            time.sleep(0.5)
        assert 'fangxian_rows_written_total{table="gate_scans"} 1.0' in sink_text
        text = _metrics(settings.metrics_port)  # the decide process's own registry
        assert f'fangxian_events_in_total{{topic="{settings.topics.gate_scans}"}} 1.0' in text
        assert 'fangxian_gate_decisions_total{decision="DENY"} 1.0' in text
        lag = re.search(r"^fangxian_decision_lag_seconds_count (\S+)$", text, flags=re.M)
        assert lag is not None and float(lag.group(1)) >= 1

        deadline = time.monotonic() + 60  # the sink process relays the alert to the duty log
        while time.monotonic() < deadline and "HEALTH_CODE_RED" not in log_path.read_text(
            errors="replace"
        ):
            time.sleep(0.5)
        duty = [line for line in log_path.read_text().splitlines() if "fangxian.on_duty" in line]
        assert any("HEALTH_CODE_RED" in line and "红码" in line for line in duty), duty
        assert red["subject_id"] not in "\n".join(duty)  # masked for the person reading it

        # a decide child killed hard is restarted by the supervisor and decides again
        before = _wait("both stages", lambda: (c := _children(proc.pid)) and len(c) == 2 and c)
        os.kill(before["decide"], signal.SIGKILL)
        after = _wait(
            "a new decide child",
            lambda: (c := _children(proc.pid)).get("decide") not in (None, before["decide"]) and c,
        )
        assert after["sink"] == before["sink"]  # the sink was not touched
        second = fresh_example("GateScan", "resident_qr", health_code="RED")
        producer = RecordProducer(settings)
        producer.send("GateScan", second)
        producer.close()
        consumer = KafkaConsumer(
            settings.topics.gate_decisions,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            consumer_timeout_ms=90_000,
        )
        seen = []
        for message in consumer:
            seen.append(Codec().decode("GateDecision", message.value)["event_id"])
            if second["event_id"] in seen:
                break
        consumer.close()
        assert seen.count(red["event_id"]) == 1  # the first decision was not made again
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0  # SIGTERM reached both children and they stopped cleanly
    text = log_path.read_text(encoding="utf-8")
    assert "值班派单未启动" in text and "dispatcher NOT started" in text  # said, not crash-looped
    writer = open_writer(clickhouse_url)
    try:
        rows = writer.query(f"SELECT event_id FROM {writer.database}.gate_scans ORDER BY event_id")
        assert rows == sorted([(red["event_id"],), (second["event_id"],)])
    finally:
        writer.close()
