"""Assembling and serving the console: ``fangxian console`` (uvicorn) and, in-process, the
embedded demo and the browser test (``start_console``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import uvicorn

from fangxian.console.actions import ActionWriter
from fangxian.console.app import ConsoleDeps, build_app
from fangxian.console.audit import ConsoleAudit
from fangxian.console.auth import Credentials, SessionSigner
from fangxian.console.history import Capacity, History
from fangxian.console.live import LiveFeed, LiveState
from fangxian.console.roster import StaffDirectory
from fangxian.console.silences import SilenceFeed
from fangxian.core.settings import Settings
from sinks import Reader, Writer, open_reader
from sinks.audit import AuditTrail

log = logging.getLogger(__name__)

AUDIT_DRAIN_S = 5.0


def assemble(settings: Settings, reader: Reader) -> tuple[ConsoleDeps, LiveFeed]:
    """Everything the app needs, over ``reader`` (the console's, or a shared chdb session)."""
    state = LiveState()
    feed = LiveFeed(settings, state)
    directory = StaffDirectory()
    # audit rows go through the console's own ClickHouse connection (chdb allows one per
    # process); a row it does not take waits in the spool
    trail = AuditTrail(
        lambda: cast(Writer, reader), settings.audit_spool_dir, "console", owns_connection=False
    )
    deps = ConsoleDeps(
        settings=settings,
        signer=SessionSigner(settings.console_secret, settings.console_session_s),
        credentials=Credentials(Path(settings.console_credentials_file)),
        directory=directory,
        state=state,
        history=History(reader, settings.default_timezone),
        actions=ActionWriter(settings),
        capacity=Capacity.parse(settings.console_capacity),
        audit=ConsoleAudit(trail, settings.console_secret),
        silences=SilenceFeed(settings),
    )

    async def follow_staff(stop: asyncio.Event) -> None:
        await directory.follow(settings, stop)

    async def actions(stop: asyncio.Event) -> None:
        assert deps.actions is not None
        await deps.actions.start()
        try:
            await stop.wait()
        finally:
            await deps.actions.stop()

    async def drain_audit(stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await asyncio.to_thread(trail.drain)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), AUDIT_DRAIN_S)
        finally:
            await asyncio.to_thread(trail.drain)
            trail.close()

    async def silences(stop: asyncio.Event) -> None:
        assert deps.silences is not None
        await deps.silences.start()
        try:
            await deps.silences.follow(stop)
        finally:
            await deps.silences.stop()

    deps.background = [follow_staff, feed.run, actions, drain_audit, silences]
    return deps, feed


@dataclass
class RunningConsole:
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]
    deps: ConsoleDeps
    feed: LiveFeed

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Until the HTTP socket listens, the staff roster is read and the feed positioned."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        steps = (
            ("HTTP server", lambda: self.server.started),
            ("staff directory", self.deps.directory.loaded.is_set),
            ("live feed", self.feed.ready.is_set),
            (
                "silences",
                self.deps.silences.loaded.is_set if self.deps.silences else lambda: True,
            ),
        )
        for name, done in steps:
            while not done():
                if self.task.done():
                    self.task.result()
                    raise RuntimeError("console stopped while starting")
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"console not ready after {timeout_s} s: {name}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.task, 10)


async def _serve_quietly(server: uvicorn.Server) -> None:
    await server._serve()  # serve() without capture_signals(): SIGINT stays the caller's


async def start_console(
    settings: Settings, reader: Reader, *, host: str | None = None, port: int | None = None
) -> RunningConsole:
    """The console as a task of the running loop (no signal handlers of its own)."""
    deps, feed = assemble(settings, reader)
    config = uvicorn.Config(
        build_app(deps),
        host=host or settings.bind_host,
        port=settings.console_port if port is None else port,
        log_level="warning",
        lifespan="on",
        proxy_headers=True,
    )
    server = uvicorn.Server(config)
    # serve the sockets without uvicorn's signal handling: the caller owns the loop's signals
    task = asyncio.create_task(_serve_quietly(server))
    url = f"http://{config.host}:{config.port}"
    return RunningConsole(url, server, task, deps, feed)


def run_console(settings: Settings) -> int:
    """``fangxian console``: serve until SIGINT/SIGTERM."""
    try:
        SessionSigner(settings.console_secret)
        Capacity.parse(settings.console_capacity)
    except ValueError as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    reader = open_reader(settings.clickhouse_url, cluster=settings.clickhouse_cluster)
    deps, _feed = assemble(settings, reader)
    log.info(
        "staff console 值班台 on http://%s:%d (credentials %s)",
        settings.bind_host,
        settings.console_port,
        settings.console_credentials_file,
    )
    uvicorn.run(
        build_app(deps),
        host=settings.bind_host,
        port=settings.console_port,
        log_level="info",
        proxy_headers=True,
    )
    reader.close()
    return 0
