"""The daily report goes up a level: every community active on the day gets its report on
``reports.daily`` (real Kafka), keyed by community and date, figures as in ClickHouse."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from kafka import KafkaConsumer

from fangxian.core.settings import Settings
from sinks import migrate, open_writer
from streams.daily_reports import kafka_producer, publish_day
from tests.integration.pipeline_harness import fresh_example

TZ = "Asia/Shanghai"


def test_publish_day_sends_one_report_per_active_community(topics: Settings, chdb_url: str) -> None:
    scans = [fresh_example("GateScan", "resident_qr", direction=d) for d in ("OUT", "IN", "OUT")]
    day = dt.datetime.fromtimestamp(scans[0]["event_time"] / 1000, ZoneInfo(TZ)).date()
    writer = open_writer(chdb_url)
    try:
        migrate(writer)
        writer.write("gate_scans", scans)
        producer = kafka_producer(topics.kafka_bootstrap)
        try:
            keys = publish_day(writer, producer, topics.topics.reports_daily, day, TZ)
        finally:
            producer.close()
    finally:
        writer.close()
    community = scans[0]["community_id"]
    assert keys == [f"{community}:{day.isoformat()}"]
    consumer = KafkaConsumer(
        topics.topics.reports_daily,
        bootstrap_servers=topics.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    messages = list(consumer)
    consumer.close()
    assert [m.key.decode() for m in messages] == keys
    report = json.loads(messages[0].value)
    assert report["code"] == community
    assert report["date"] == day.isoformat()
    assert (report["figures"]["entries"], report["figures"]["exits"]) == (1, 2)
    figures = json.dumps(report, ensure_ascii=False)
    assert scans[0]["subject_id"] not in figures  # an aggregate: no subject tokens
