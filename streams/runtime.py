"""Assembles one worker's parts from the settings: codec, reference store, rule engine,
processor, ClickHouse writer and the consume loop. Used by the Faust worker, the embedded demo
run, the benchmark and the integration tests, so all of them run the same pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec
from sinks import Connection, migrate, open_writer
from streams.engine import RuleEngine
from streams.processor import BatchResult, EventProcessor
from streams.reference import ReferenceStore
from streams.worker import PipelineWorker

log = logging.getLogger(__name__)


class Runtime:
    """One worker process's pipeline. ``await start()``, ``await run()``, ``await stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        writer: Connection | None = None,
        on_result: Callable[[BatchResult], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics.create()
        self.codec = Codec()
        self._owns_writer = writer is None
        self.writer = writer or open_writer(settings.clickhouse_url)
        self.engine = RuleEngine(
            allowed_lateness_s=settings.allowed_lateness_s,
            max_clock_skew_s=settings.max_clock_skew_s,
        )
        self.store = ReferenceStore(
            settings, self.codec, self.metrics, on_update=self._on_reference
        )
        self.engine_bind_reference(self.store)
        self.processor = EventProcessor(settings, self.codec, self.engine, self.metrics)
        kwargs: dict[str, Any] = {"on_result": on_result}
        if clock_ms is not None:
            kwargs["clock_ms"] = clock_ms
        self.worker = PipelineWorker(settings, self.processor, self.writer, self.metrics, **kwargs)
        self._run_task: asyncio.Task[None] | None = None

    def engine_bind_reference(self, store: ReferenceStore) -> None:
        self.engine.bind_reference(
            residents=store.records["residents"],
            passes=store.records["passes"],
            vehicles=store.records["vehicles"],
        )

    def _on_reference(self, kind: str, key: str, record: dict[str, Any] | None) -> None:
        self.engine.on_reference_update(kind, key, record)

    async def start(self, *, migrate_db: bool = True) -> None:
        if migrate_db:
            applied = await asyncio.get_running_loop().run_in_executor(
                None, lambda: migrate(self.writer, retention_days=self.settings.retention_days)
            )
            if applied:
                log.info("ClickHouse migrations applied 已执行数据库迁移: %s", applied)
        await self.store.start()
        await asyncio.wait_for(self.store.ready.wait(), timeout=300)
        await self.worker.start()

    async def run(self) -> None:
        await self.worker.run()

    async def stop(self) -> None:
        try:
            await self.worker.stop()
            await self.store.stop()
        finally:
            if self._owns_writer:
                self.writer.close()
