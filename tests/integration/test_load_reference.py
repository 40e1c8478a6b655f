"""``fangxian load`` validates a register, pseudonymises it and produces it to the compacted
reference topic; no raw ID number reaches Kafka."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from kafka import KafkaConsumer

from fangxian.core.settings import Settings, Topics
from schemas import Codec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "residents-example.csv"


def test_load_residents_produces_tokens_only(topics: Settings) -> None:
    env = dict(
        os.environ,
        FANGXIAN_KAFKA_BOOTSTRAP=topics.kafka_bootstrap,
        FANGXIAN_PSEUDONYM_KEY="test-only-key",
        PYTHONPATH=str(ROOT),
    )
    for f in fields(Topics):
        env["FANGXIAN_TOPIC_" + f.name.upper()] = getattr(topics.topics, f.name)
    done = subprocess.run(
        [sys.executable, "-m", "fangxian.cli", "load", "residents", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # the example has deliberately bad rows
    assert "line 9" in done.stdout

    consumer = KafkaConsumer(
        topics.topics.residents,
        bootstrap_servers=topics.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    messages = list(consumer)
    consumer.close()
    with EXAMPLE.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    personal = {row[col] for row in rows for col in ("身份证号", "手机号", "姓名") if row[col]}
    assert len(messages) == 7
    codec = Codec()
    for m in messages:
        record = codec.decode("Resident", m.value)
        assert m.key == record["resident_id"].encode()
        assert len(record["resident_id"]) == 32
        blob = m.key + m.value
        assert not any(raw.encode() in blob for raw in personal)
