"""The Faust application: the production worker (``fangxian worker``).

What runs here:
- ``EventPipeline`` (a Faust service): the hot path. It consumes gate scans, temperature
  readings and health reports in batches of thousands with its own consumer-group member and
  commits after the ClickHouse write (see ``streams/worker.py``). Faust's per-message stream
  machinery costs more than the whole rule set per event on this hardware (~14k events/s with
  ``take()`` vs the client's ~250k), so the hot path polls batches directly.
- ``notify_on_duty`` (a Faust agent): every alert on the ``alerts`` topic reaches the on-duty
  staff log (zh-CN first, English beside it).
- ``publish_yesterdays_reports`` (a Faust crontab, 00:10 local): the daily community epidemic
  report of every active community to ``reports.daily`` for the street/district level.
- ``/metrics`` (prometheus-client) on ``settings.metrics_port``; Faust's web server serves
  ``/`` health on ``settings.web_port``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

import faust
import mode
from prometheus_client import CollectorRegistry, start_http_server

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from streams.notify import alert_line, should_notify
from streams.runtime import Runtime

log = logging.getLogger(__name__)
staff_log = logging.getLogger("fangxian.on_duty")


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id + "-faust",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.faust_store,
        web_port=settings.web_port,
        web_host=settings.bind_host,
        topic_partitions=settings.event_partitions,
        topic_replication_factor=settings.replication_factor,
    )
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    codec = Codec()

    @app.service
    class EventPipeline(mode.Service):
        runtime: Runtime

        async def on_start(self) -> None:
            start_http_server(settings.metrics_port, addr=settings.bind_host, registry=registry)
            self.runtime = Runtime(settings, metrics=metrics)
            await self.runtime.start()
            self.add_future(self.runtime.run())

        async def on_stop(self) -> None:
            await self.runtime.stop()

    alerts_topic = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")

    @app.agent(alerts_topic)
    async def notify_on_duty(stream: Any) -> None:
        async for value in stream:
            try:
                alert = codec.decode("Alert", value)
            except InvalidEvent as err:
                log.error("undecodable alert: %s", err)
                continue
            if should_notify(alert):
                staff_log.warning("%s", alert_line(alert))

    @app.crontab("10 0 * * *", timezone=ZoneInfo(settings.default_timezone))
    async def publish_yesterdays_reports() -> None:
        """社区疫情信息报表 for the level above: yesterday's report of every active community
        to ``reports.daily`` (idempotent: one key per community and day)."""
        await asyncio.get_running_loop().run_in_executor(None, _publish_yesterday, settings)

    return app


def _publish_yesterday(settings: Settings) -> None:
    from sinks import open_writer
    from streams.daily_reports import kafka_producer, publish_day

    zone = ZoneInfo(settings.default_timezone)
    yesterday = dt.datetime.now(zone).date() - dt.timedelta(days=1)
    writer = open_writer(settings.clickhouse_url)
    producer = kafka_producer(settings.kafka_bootstrap)
    try:
        keys = publish_day(
            writer, producer, settings.topics.reports_daily, yesterday, settings.default_timezone
        )
        log.info("daily reports published 日报已上报: %d (%s)", len(keys), yesterday)
    finally:
        producer.close()
        writer.close()
