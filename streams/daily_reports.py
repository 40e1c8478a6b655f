"""Send a daily report up a level: JSON to the ``reports.daily`` topic (kafka-python).

The sink process's daily crontab (``fangxian/worker.py``) and ``fangxian report --publish``
use this; the report itself is built on the read side of the sinks (``sinks/reports/``)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Protocol

from sinks.base import Reader
from sinks.reports.daily import DailyReport
from sinks.reports.render import render_json

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0


class Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


def report_key(report: DailyReport) -> bytes:
    """``<community or county code>:<YYYY-MM-DD>`` — one key per report, so a re-sent report
    replaces the earlier one in a compacted consumer's view."""
    return f"{report.scope.code}:{report.date.isoformat()}".encode()


def publish_report(report: DailyReport, producer: Producer, topic: str) -> None:
    """Produce ``report`` and wait until the broker has it."""
    future = producer.send(topic, value=render_json(report).encode("utf-8"), key=report_key(report))
    future.get(timeout=SEND_TIMEOUT_S)
    producer.flush(timeout=SEND_TIMEOUT_S)
    log.info("published report %s to %s", report_key(report).decode(), topic)


def kafka_producer(bootstrap: str, **client: Any) -> Producer:
    """``client``: client options — security (``fangxian.core.kafka_security.kafka_client_kwargs``)
    and timeouts (``fangxian.core.timeouts.kafka_producer_timeouts``)."""
    from kafka import KafkaProducer

    producer: Producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **client)
    return producer


def communities_on(reader: Reader, start_s: int, end_s: int) -> list[str]:
    """Every community with a gate scan or a health report in ``[start_s, end_s)`` (epoch s)."""
    db = reader.database
    window = "event_time >= toDateTime(%(s)s) AND event_time < toDateTime(%(e)s)"
    rows = reader.query(
        f"SELECT DISTINCT community_id FROM {db}.gate_scans WHERE {window} "
        f"UNION ALL SELECT DISTINCT community_id FROM {db}.health_reports WHERE {window}",
        {"s": start_s, "e": end_s},
    )
    return sorted({str(r[0]) for r in rows})


def publish_day(
    reader: Reader, producer: Producer, topic: str, day: dt.date, timezone: str
) -> list[str]:
    """Build and publish the daily report of every community active on ``day``; returns the
    report keys sent. The sink process calls this shortly after local midnight (00:10)."""
    from sinks.reports.daily import Scope, build_report
    from sinks.reports.sqltime import local_day_bounds

    keys = []
    for community_id in communities_on(reader, *local_day_bounds(day, timezone)):
        report = build_report(reader, Scope("community", community_id), day, timezone)
        publish_report(report, producer, topic)
        keys.append(report_key(report).decode())
    return keys
