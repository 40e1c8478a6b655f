"""``alert.actions`` → the ClickHouse table ``alert_actions`` (migration 0004).

The topology's sink stage (group ``<app_id>-sink``) reads ``alert.actions`` with the other
output topics once it lands (``sinks.rows.TABLE_OF_RECORD`` maps ``AlertAction`` to the
table); until then, and for a dispatcher deployed alone, this small loop does the same:
consume (read_committed), decode, insert, then commit — a crash in between re-inserts rows with
the same ``action_id`` (ReplacingMergeTree keeps one). Group ``<app_id>-sink-actions``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from sinks import SinkUnavailable, Writer

log = logging.getLogger(__name__)

TABLE = "alert_actions"


class ActionSink:
    def __init__(self, settings: Settings, writer: Writer, *, flush_s: float = 0.5) -> None:
        self._s = settings
        self._writer = writer
        self._flush_s = flush_s
        self._codec = Codec()
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.written = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self._s.topics.alert_actions,
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
            group_id=f"{self._s.app_id}-sink-actions",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await self._consumer.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.stop()

    async def run(self) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=int(self._flush_s * 1000), max_records=20000
            )
            if not batches:
                continue
            rows: list[dict[str, Any]] = []
            for messages in batches.values():
                for msg in messages:
                    try:
                        rows.append(self._codec.decode("AlertAction", msg.value))
                    except InvalidEvent as err:
                        log.error("skipping undecodable alert action: %s", err)
            while rows:
                try:
                    await loop.run_in_executor(None, self._writer.write, TABLE, rows)
                    self.written += len(rows)
                    break
                except SinkUnavailable as err:
                    log.warning("ClickHouse unavailable, retrying in 1 s: %s", err)
                    await asyncio.sleep(1.0)
            await self._consumer.commit()
