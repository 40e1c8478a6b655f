"""Runs the real worker pipeline (``streams.runtime.Runtime``) inside a test against the real
broker and a real ClickHouse, until a condition holds. Shared by the pipeline tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from fangxian.core.settings import Settings
from schemas import contract
from streams.processor import BatchResult
from streams.runtime import Runtime


def now_ms() -> int:
    return int(time.time() * 1000)


def fresh_example(record_name: str, stem: str | None = None, **changes: Any) -> dict[str, Any]:
    """A contract example with a new event_id and a current event_time (so TTLs keep it)."""
    examples = contract.named_examples(record_name)
    record = dict(examples[f"{record_name}.{stem}"] if stem else examples[record_name])
    if "event_id" in record:
        record["event_id"] = str(uuid.uuid4())
    if "event_time" in record:
        record["event_time"] = now_ms()
    if "report_date" in record:
        record["report_date"] = now_ms() // 86_400_000
    record.update(changes)
    return record


def rows_written(runtime: Runtime, table: str) -> float:
    return float(runtime.metrics.rows_written.labels(table=table)._value.get())


class PipelineRun:
    """Collects what the worker produced while it ran."""

    def __init__(self) -> None:
        self.results: list[BatchResult] = []

    def on_result(self, result: BatchResult) -> None:
        self.results.append(result)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [row for r in self.results for row in r.rows.get(table, [])]


async def run_pipeline_until(
    settings: Settings,
    done: Callable[[Runtime, PipelineRun], bool],
    *,
    timeout_s: float = 60.0,
    runtime_kwargs: dict[str, Any] | None = None,
    during: Callable[[Runtime], Any] | None = None,
) -> tuple[Runtime, PipelineRun]:
    """Start a worker, wait until ``done`` (or fail after ``timeout_s``), stop it cleanly."""
    run = PipelineRun()
    runtime = Runtime(settings, on_result=run.on_result, **(runtime_kwargs or {}))
    await runtime.start()
    task = asyncio.create_task(runtime.run())
    deadline = time.monotonic() + timeout_s
    try:
        while not done(runtime, run):
            if task.done():
                task.result()
                raise AssertionError("worker stopped before the condition held")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached within {timeout_s}s")
            if during is not None:
                await asyncio.sleep(0)
                maybe = during(runtime)
                if asyncio.iscoroutine(maybe):
                    await maybe
            await asyncio.sleep(0.1)
    finally:
        await runtime.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return runtime, run
