"""Assembles the stages from the settings.

- ``DecideRuntime``: codec, reference store, one rule engine per task, the decide stage.
- ``SinkRuntime``: ClickHouse writer (migrated), the sink stage.
- ``Runtime``: both in one process, for the embedded demo (``fangxian run``), the benchmark and
  the integration tests. ``fangxian worker`` runs them as two processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec
from sinks import Connection, clickhouse_options, open_writer
from sinks.migrate import migrate_when_available
from streams.engine import RuleEngine
from streams.processor import BatchResult
from streams.reference import ReferenceStore
from streams.stages.decide import ClientFactory, DecideStage
from streams.stages.sink import SinkStage

log = logging.getLogger(__name__)


class DecideRuntime:
    """The decide process's parts. ``await start()``, ``await run()``, ``await stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        on_result: Callable[[BatchResult], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
        consumer_factory: ClientFactory | None = None,
        producer_factory: ClientFactory | None = None,
        restore_state: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics.create()
        self.codec = Codec()
        self._observed: list[tuple[str, dict[str, Any]]] | None = None
        self.store = ReferenceStore(
            settings, self.codec, self.metrics, on_update=self._on_reference
        )
        kwargs: dict[str, Any] = {}
        if clock_ms is not None:
            kwargs["clock_ms"] = clock_ms
        if consumer_factory is not None:
            kwargs["consumer_factory"] = consumer_factory
        if producer_factory is not None:
            kwargs["producer_factory"] = producer_factory
        self.stage = DecideStage(
            settings,
            self.codec,
            self.metrics,
            self.make_engine,
            on_output=(lambda _p, result: on_result(result)) if on_result is not None else None,
            restore_state=restore_state,
            **kwargs,
        )

    def make_engine(self, partition: int, owns: Callable[[str], bool]) -> RuleEngine:
        engine = RuleEngine(
            allowed_lateness_s=self.settings.allowed_lateness_s,
            max_clock_skew_s=self.settings.max_clock_skew_s,
            owns=owns,
        )
        records = self.store.records
        engine.bind_reference(
            residents=records["residents"],
            passes=records["passes"],
            vehicles=records["vehicles"],
            rules=records["rules"],
            observed=self._observed_residents(),
        )
        return engine

    def _observed_residents(self) -> list[tuple[str, dict[str, Any]]]:
        """Residents under home observation: the register decoded once for all task engines
        (until a resident record changes)."""
        if self._observed is None:
            self._observed = [
                (rid, rec)
                # a copy taken in one step: the store's thread may add residents meanwhile
                for rid, rec in list(self.store.records["residents"].items())
                if rec.get("status") == "HOME_OBSERVATION"
            ]
        return self._observed

    def _on_reference(self, kind: str, key: str, record: dict[str, Any] | None) -> None:
        if kind == "residents":
            self._observed = None
        self.stage.on_reference_update(kind, key, record)

    async def start(self) -> None:
        await self.store.start()
        await asyncio.wait_for(self.store.ready.wait(), timeout=300)
        await self.stage.start()

    async def run(self) -> None:
        await self.stage.run()

    async def stop(self) -> None:
        try:
            await self.stage.stop()
        finally:
            await self.store.stop()


class SinkRuntime:
    """The sink process's parts."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        writer: Connection | None = None,
        consumer_factory: ClientFactory | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics.create()
        self.codec = Codec()
        self._owns_writer = writer is None
        self.writer = writer or open_writer(settings.clickhouse_url, **clickhouse_options(settings))
        kwargs: dict[str, Any] = {}
        if consumer_factory is not None:
            kwargs["consumer_factory"] = consumer_factory
        self.stage = SinkStage(settings, self.codec, self.writer, self.metrics, **kwargs)

    async def start(self, *, migrate_db: bool = True) -> None:
        """Migrate — waiting, with back-off, while ClickHouse is unreachable (logged zh-CN
        first, gauge ``fangxian_sink_waiting_for_clickhouse``) — then join the sink group.
        Cancel it to give up waiting."""
        if migrate_db:
            waiting = self.metrics.sink_waiting_for_clickhouse
            applied = await migrate_when_available(
                self.writer,
                retention_days=self.settings.retention_days,
                on_available=lambda up: waiting.set(0 if up else 1),
            )
            if applied:
                log.info("ClickHouse migrations applied 已执行数据库迁移: %s", applied)
        await self.stage.start()

    async def run(self) -> None:
        await self.stage.run()

    async def stop(self) -> None:
        try:
            await self.stage.stop()
        finally:
            if self._owns_writer:
                self.writer.close()


class Runtime:
    """Both stages in one process (demo, benchmark, tests). They share nothing but the metrics
    registry: the decide stage never waits for the sink."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        writer: Connection | None = None,
        on_result: Callable[[BatchResult], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
        restore_state: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics.create()
        self.decide = DecideRuntime(
            settings,
            metrics=self.metrics,
            on_result=on_result,
            clock_ms=clock_ms,
            restore_state=restore_state,
        )
        self.sink = SinkRuntime(settings, metrics=self.metrics, writer=writer)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def store(self) -> ReferenceStore:
        return self.decide.store

    @property
    def writer(self) -> Connection:
        return self.sink.writer

    async def start(self, *, migrate_db: bool = True) -> None:
        await self.sink.start(migrate_db=migrate_db)
        await self.decide.start()

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(self.decide.run(), name="decide"),
            asyncio.create_task(self.sink.run(), name="sink"),
        ]
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()

    async def stop(self) -> None:
        try:
            await self.decide.stop()
        finally:
            await self.sink.stop()
            for task in self._tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
