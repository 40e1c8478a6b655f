"""A benchmark worker in its own process: ``python -m fangxian.bench.worker SETTINGS_JSON``.

It runs the real pipeline (``streams.runtime.Runtime``) so the harness's own producers and
consumers do not share its GIL. Protocol — JSON lines on stdout, commands on stdin:

- after migrations and the reference data are loaded it prints ``{"state": "loaded", …}`` and
  waits for ``go``;
- on ``go`` it joins the consumer group and runs; the first processed batch prints
  ``{"state": "first_batch", "t": <epoch s>}``;
- on ``metrics`` (while running) it prints ``{"state": "metrics", "decision_lag": …, "gc": …}``,
  the decision-lag histogram so far and the collector's pauses since the previous ``metrics``;
- on ``stop`` (or end of stdin) it stops cleanly and prints ``{"state": "stopped", …}`` with
  its peak RSS and metrics. With ``--profile PREFIX`` the run between ``go`` and ``stop`` is
  profiled by pyinstrument into ``PREFIX.txt`` and ``PREFIX.html``; ``--gc MODE`` sets the
  collector up once the reference data is loaded (``fangxian.core.gctune``).

``--role decide`` runs only the decide stage (``DecideRuntime``: no ClickHouse, no migration),
``--role sink`` only the sink stage (``SinkRuntime``: migrates, loads no reference data); the
default ``both`` runs ``Runtime``. ``WorkerProcess`` is the harness side of that protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from fangxian.bench.rss import peak_rss_kb
from fangxian.core.gctune import DEFAULT, MODES, GcProbe, apply_mode, tracked_objects
from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings, Topics
from infra.process import terminate
from sinks import migrate
from streams.processor import BatchResult
from streams.runtime import DecideRuntime, Runtime, SinkRuntime

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- settings over the command line ----------------------------------------------------------


def settings_to_json(settings: Settings) -> str:
    return json.dumps(dataclasses.asdict(settings))


def settings_from_json(text: str) -> Settings:
    values = json.loads(text)
    values["topics"] = Topics(**values["topics"])
    return Settings(**values)


def metric_totals(metrics: Metrics) -> dict[str, Any]:
    """Rows written per table, and the sink's own time, from the worker's metrics."""
    rows: dict[str, float] = {}
    for family in metrics.rows_written.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                rows[sample.labels["table"]] = sample.value
    flush_s = 0.0
    flushes = 0.0
    for family in metrics.sink_flush_seconds.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                flush_s = sample.value
            elif sample.name.endswith("_count"):
                flushes = sample.value
    events = 0.0
    for family in metrics.events_in.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                events += sample.value
    return {"rows_written": rows, "sink_flush_s": flush_s, "flushes": flushes, "events": events}


def lag_histogram(metrics: Metrics) -> dict[str, Any]:
    """The decision-lag histogram as ``fangxian.bench.stats.Histogram`` (cumulative buckets)."""
    buckets: list[list[float]] = []
    count = total = 0.0
    for family in metrics.decision_lag_seconds.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append([float(sample.labels["le"]), sample.value])
            elif sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    buckets.sort()
    return {"buckets": buckets, "count": count, "sum": total}


# --- the child -------------------------------------------------------------------------------


def _emit(state: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"state": state, **fields}) + "\n")
    sys.stdout.flush()


def _stdin_commands(loop: asyncio.AbstractEventLoop, commands: asyncio.Queue[str]) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(commands.put_nowait, line.strip())
    loop.call_soon_threadsafe(commands.put_nowait, "stop")


ROLES = ("both", "decide", "sink")


def _first_fetch_consumer(on_first: Callable[[], None]) -> Callable[..., Any]:
    """A consumer factory for the sink stage that calls ``on_first`` when a ``getmany`` first
    returns records (the sink stage has no per-batch hook; its timing starts there)."""
    from aiokafka import AIOKafkaConsumer

    class _Consumer(AIOKafkaConsumer):
        async def getmany(self, *args: Any, **kwargs: Any) -> Any:
            batches = await super().getmany(*args, **kwargs)
            if batches:
                on_first()
            return batches

    return _Consumer


async def _child(
    settings: Settings, profile_prefix: str | None, gc_mode: str = DEFAULT, role: str = "both"
) -> None:
    first: list[float] = []
    probe = GcProbe().install()

    def on_first() -> None:
        if not first:
            first.append(time.time())
            _emit("first_batch", t=first[0])

    def on_result(result: BatchResult) -> None:
        if result.events:
            on_first()

    runtime: Runtime | DecideRuntime | SinkRuntime
    if role == "decide":
        runtime = DecideRuntime(settings, on_result=on_result)
    elif role == "sink":
        runtime = SinkRuntime(settings, consumer_factory=_first_fetch_consumer(on_first))
    else:
        runtime = Runtime(settings, on_result=on_result)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=_stdin_commands, args=(loop, commands), daemon=True).start()
    began = time.monotonic()
    if not isinstance(runtime, DecideRuntime):
        writer = runtime.writer
        await loop.run_in_executor(
            None, lambda: migrate(writer, retention_days=settings.retention_days)
        )
    reference: dict[str, int] = {}
    if not isinstance(runtime, SinkRuntime):
        await runtime.store.start()
        await runtime.store.ready.wait()
        reference = {kind: len(recs) for kind, recs in runtime.store.records.items()}
    gc_setup = apply_mode(gc_mode)  # the reference data is loaded: what stays, stays
    _emit(
        "loaded",
        seconds=round(time.monotonic() - began, 2),
        vmhwm_kb=peak_rss_kb(),
        reference=reference,
        gc=gc_setup,
        role=role,
    )
    while (command := await commands.get()) != "go":
        if command == "stop":
            await runtime.stop()
            _emit("stopped", vmhwm_kb=peak_rss_kb(), **metric_totals(runtime.metrics))
            return
    profiler = None
    if profile_prefix:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="enabled")
        profiler.start()
    if isinstance(runtime, Runtime):
        await runtime.sink.start(migrate_db=False)
        await runtime.decide.stage.start()
    elif isinstance(runtime, DecideRuntime):
        await runtime.stage.start()
    else:
        await runtime.start(migrate_db=False)
    probe.reset()
    task = asyncio.create_task(runtime.run())
    _emit("running", t=time.time())
    waiter = asyncio.create_task(commands.get())
    while True:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # a crash surfaces here (and in the harness via the exit code)
        if waiter in done:
            command = waiter.result()
            if command == "stop":
                break
            if command == "metrics":
                # gc pauses since the last snapshot
                _emit("metrics", decision_lag=lag_histogram(runtime.metrics), gc=probe.report())
                probe.reset()
            waiter = asyncio.create_task(commands.get())
    if profiler is not None:
        profiler.stop()
    await runtime.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if profiler is not None and profile_prefix:
        Path(profile_prefix + ".txt").write_text(
            profiler.output_text(unicode=True, color=False), encoding="utf-8"
        )
        Path(profile_prefix + ".html").write_text(profiler.output_html(), encoding="utf-8")
    counts: dict[str, int] = {}
    if isinstance(runtime, Runtime):
        counts = {
            "committed_events": runtime.sink.stage.committed_rows,
            "decided": runtime.decide.stage.decided,
        }
    elif isinstance(runtime, DecideRuntime):
        counts = {"decided": runtime.stage.decided}
    else:
        counts = {"committed_events": runtime.stage.committed_rows}
    _emit(
        "stopped",
        vmhwm_kb=peak_rss_kb(),
        role=role,
        **counts,
        gc=probe.report(),
        gc_mode=gc_mode,
        gc_objects=tracked_objects(),
        **metric_totals(runtime.metrics),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fangxian.bench.worker")
    parser.add_argument("settings_json")
    parser.add_argument("--profile", help="write a pyinstrument profile to PREFIX.txt/.html")
    parser.add_argument("--gc", choices=MODES, default=DEFAULT, help="collector setup (gctune)")
    parser.add_argument("--role", choices=ROLES, default="both", help="stages to run")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_child(settings_from_json(args.settings_json), args.profile, args.gc, args.role))
    return 0


# --- the harness side ------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """The worker process died or did not answer in time (the message names its log)."""


def _die_with_parent() -> None:
    """SIGTERM the worker when the harness dies (Linux), so a killed run leaves none behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _pump(stream: IO[bytes], lines: queue.Queue[dict[str, Any] | None]) -> None:
    for raw in stream:
        with contextlib.suppress(ValueError):
            lines.put(json.loads(raw))
    lines.put(None)


class WorkerProcess:
    """One ``python -m fangxian.bench.worker`` child in its own process group."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        profile_prefix: Path | None = None,
        gc_mode: str = DEFAULT,
        role: str = "both",
    ) -> None:
        self.gc_mode = gc_mode
        self.role = role
        self.settings = settings
        self.log_path = log_path
        self._profile_prefix = profile_prefix
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.states: dict[str, dict[str, Any]] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> WorkerProcess:
        argv = [sys.executable, "-m", "fangxian.bench.worker", settings_to_json(self.settings)]
        if self._profile_prefix is not None:
            argv += ["--profile", str(self._profile_prefix)]
        argv += ["--gc", self.gc_mode, "--role", self.role]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as err:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        assert self._proc.stdout is not None
        threading.Thread(target=_pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        return self

    def wait_state(self, state: str, timeout_s: float) -> dict[str, Any]:
        """Block until the worker reports ``state``; its fields (``WorkerError`` otherwise)."""
        deadline = time.monotonic() + timeout_s
        while state not in self.states:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(
                    f"worker did not report {state!r} in {timeout_s:.0f} s; log {self.log_path}"
                )
            try:
                line = self._lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                raise WorkerError(f"worker exited before {state!r}; log {self.log_path}")
            self.states[str(line.get("state"))] = line
        return self.states[state]

    def metrics(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The running worker's decision-lag histogram now (``lag_histogram``) and its gc
        pauses since the previous call (``gc``)."""
        self.states.pop("metrics", None)
        self.command("metrics")
        return self.wait_state("metrics", timeout_s)

    def command(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode() + b"\n")
        self._proc.stdin.flush()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any] | None:
        """Ask the worker to stop cleanly; kill its process group if it does not. Its final
        report, or ``None`` when it had to be killed."""
        if self._proc is None:
            return None
        report = None
        try:
            if self._proc.poll() is None:
                with contextlib.suppress(OSError):
                    self.command("stop")
                report = self.wait_state("stopped", timeout_s)
                self._proc.wait(timeout=timeout_s)
        except (WorkerError, subprocess.TimeoutExpired) as err:
            log.warning("worker %d did not stop cleanly: %s", self._proc.pid, err)
        finally:
            terminate(self._proc, what="bench worker", grace_s=5.0)
            self._proc = None
        return report


if __name__ == "__main__":
    raise SystemExit(main())
