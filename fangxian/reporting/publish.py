"""Send a daily report up a level: JSON to the ``reports.daily`` topic (kafka-python)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from fangxian.reporting.daily import DailyReport
from fangxian.reporting.render import render_json

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


def kafka_producer(bootstrap: str) -> Producer:
    from kafka import KafkaProducer

    producer: Producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    return producer
