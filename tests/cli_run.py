"""Running the ``fangxian`` command as a user would: a subprocess with the environment as its only
configuration, output through pipes (so it is not a terminal)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path

from fangxian.core.settings import Settings, Topics

ROOT = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``FANGXIAN_*`` variables that make ``Settings.from_env`` give ``settings``' Kafka,
    ClickHouse, app id, partition counts and topic names."""
    env = {
        "FANGXIAN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FANGXIAN_CLICKHOUSE_URL": settings.clickhouse_url,
        "FANGXIAN_APP_ID": settings.app_id,
        "FANGXIAN_EVENT_PARTITIONS": str(settings.event_partitions),
        "FANGXIAN_REFERENCE_PARTITIONS": str(settings.reference_partitions),
        "FANGXIAN_CONNECT_TIMEOUT_S": str(settings.connect_timeout_s),
        "FANGXIAN_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "FANGXIAN_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "FANGXIAN_KAFKA_USERNAME": settings.kafka_username,
        "FANGXIAN_KAFKA_PASSWORD": settings.kafka_password,
        "FANGXIAN_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
    }
    for f in fields(Topics):
        env["FANGXIAN_TOPIC_" + f.name.upper()] = getattr(settings.topics, f.name)
    return env


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, *, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m fangxian.cli ARGS`` with only ``env``'s FANGXIAN_* settings (none inherited)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FANGXIAN_")}
    full = {**base, "PYTHONPATH": str(ROOT), **dict(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fangxian.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
