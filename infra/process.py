"""Run a service as a child process: its own process group, output to a log file, a readiness
wait that gives up loudly (with the log's tail) and a stop that always ends the whole group."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 40


class Service:
    """A local service a test or the demo starts and stops: ``with Service() as s: ...``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServiceStartError(RuntimeError):
    """A service did not come up: the message names it and carries the tail of its log."""


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when the process that started it dies, so a killed test
    run leaves no broker behind. (Linux ties this to the starting *thread*: start services from
    a thread that outlives them, e.g. the main thread.)"""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen[bytes],
    what: str,
    log_path: Path,
    timeout_s: float,
    interval_s: float = 0.1,
) -> float:
    """Poll ``ready`` until it returns True; return the seconds waited.

    Raises ServiceStartError when the process exits first or ``timeout_s`` passes.
    """
    started = time.monotonic()
    while True:
        code = proc.poll()
        if code is not None:
            raise ServiceStartError(
                f"{what} exited with code {code} before it was ready; log {log_path}:\n"
                + log_tail(log_path)
            )
        if ready():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise ServiceStartError(
                f"{what} was not ready after {timeout_s:.0f} s; log {log_path}:\n"
                + log_tail(log_path)
            )
        time.sleep(interval_s)


def terminate(proc: subprocess.Popen[bytes], *, what: str, grace_s: float = 15.0) -> int | None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it. Returns the exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", what, grace_s)
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    # children the service left behind in its group go too
    _signal_group(proc, signal.SIGKILL)
    return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
