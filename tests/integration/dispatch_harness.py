"""Shared pieces of the dispatcher's integration tests: settings, the fake bots' channel file,
loading the example roster through the CLI, producing alerts, reading alert.actions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from fangxian.core.settings import Settings, Topics
from infra.fake_bots import FakeBots
from infra.ports import free_port
from schemas import Codec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
COMMUNITY = "91350100M000100Y43"
ROSTER_KEY = "test-only-roster-key"
ACK_KEY = "test-only-ack-key"


def channel_specs(bots: FakeBots) -> dict[str, dict[str, str]]:
    return {
        "wecom:east-gate": {"kind": "wecom", "url": bots.wecom_url()},
        "dingtalk:community-office": {
            "kind": "dingtalk",
            "url": bots.dingtalk_url(),
            "secret": "ding-secret",
        },
        "feishu:street-office": {
            "kind": "feishu",
            "url": bots.feishu_url(),
            "secret": "feishu-secret",
        },
        "webhook:console": {"kind": "webhook", "url": bots.webhook_url(), "secret": "hook-secret"},
        "sms": {
            "kind": "sms",
            "endpoint": bots.sms_url(),
            "access_key_id": "sms-key-id",
            "access_key_secret": "sms-key-secret",
            "sign_name": "防线",
            "template_code": "SMS_0001",
        },
    }


def dispatch_settings(topics: Settings, tmp_path: Path, bots: FakeBots, **changes: Any) -> Settings:
    channels = tmp_path / "channels.json"
    channels.write_text(json.dumps(channel_specs(bots)), encoding="utf-8")
    port = free_port()
    return topics.replace(
        roster_key=ROSTER_KEY,
        ack_link_key=ACK_KEY,
        ack_port=port,
        ack_base_url=f"http://127.0.0.1:{port}",
        dispatch_channels_file=str(channels),
        dispatch_tick_s=0.05,
        **{"dispatch_metrics_port": free_port(), **changes},
    )


def env_of(settings: Settings) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in (
        "kafka_bootstrap",
        "app_id",
        "clickhouse_url",
        "roster_key",
        "ack_link_key",
        "ack_port",
        "ack_base_url",
        "dispatch_channels_file",
        "dispatch_tick_s",
        "dispatch_metrics_port",
        "event_partitions",
    ):
        env["FANGXIAN_" + name.upper()] = str(getattr(settings, name))
    for f in fields(Topics):
        env["FANGXIAN_TOPIC_" + f.name.upper()] = getattr(settings.topics, f.name)
    return env


def load_example_roster(settings: Settings, escalation: Path | None = None) -> dict[str, str]:
    """``fangxian load staff|duty|escalation`` on the example files; stdout by kind."""
    out = {}
    for kind, name in (
        ("staff", "staff-example.csv"),
        ("duty", "duty-example.csv"),
        ("escalation", "escalation-example.json"),
    ):
        path = escalation if kind == "escalation" and escalation else EXAMPLES / name
        done = subprocess.run(
            [sys.executable, "-m", "fangxian.cli", "load", kind, str(path)],
            env=env_of(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode in (0, 1), done.stderr
        out[kind] = done.stdout
    return out


def fever_alert(now_ms: int, gate: str = "east-gate", **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": str(uuid.uuid4()),
        "alert_type": "FEVER_CONFIRMED",
        "severity": "CRITICAL",
        "community_id": COMMUNITY,
        "gate_id": gate,
        "device_id": "gun-east-03",
        "subject_id": "9802b052e8bab1441a0f299ab1dac951",
        "source_event_ids": [],
        "message_zh": "东门复测体温 37.6 °C，确认发热，请按流程处置。",
        "message_en": "East gate recheck 37.6 °C: fever confirmed, follow the procedure.",
        "details": {"recheck_c": "37.6"},
        "event_time": now_ms,
        "created_at": now_ms,
        **extra,
    }


class AlertProducer:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topics.alerts
        self._codec = Codec()
        self._producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")

    def send(self, alert: dict[str, Any]) -> None:
        self._producer.send(
            self._topic, self._codec.encode("Alert", alert), key=alert["community_id"].encode()
        )
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


def read_actions(settings: Settings, timeout_s: float = 3.0) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        settings.topics.alert_actions,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    codec = Codec()
    try:
        return [codec.decode("AlertAction", m.value) for m in consumer]
    finally:
        consumer.close()


def wait_for(predicate: Any, timeout_s: float, what: str, step_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
