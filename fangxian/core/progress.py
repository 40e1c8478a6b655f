"""Progress of long work, for the person watching it: a bar on a terminal, plain periodic lines
when the output is not a terminal (CI, ``journalctl``, a pipe), so a log shows progress too.

>>> with Progress("读取 read residents.csv", total=rows, unit="rows") as progress:
...     for row in rows_of(path):
...         progress.advance()
...         progress.count("validated")

``Progress`` writes to stderr (stdout stays for a command's output: a report, JSON). It is cheap
to call per item: the bar or the line is redrawn at most every ``redraw_s`` / ``interval_s``.
Library functions take ``progress: Progress | None = None`` and stay silent without one; only
the CLI makes them.

``phase(label)`` marks one step of a multi-step job (a benchmark phase, a migration): a line
when it starts and one when it ends, with its duration.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

DEFAULT_INTERVAL_S = 5.0  # plain lines: one every this many seconds
REDRAW_S = 0.1  # terminal bar: redraw at most this often


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _number(n: float) -> str:
    return f"{n:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Progress of one job: ``done`` of ``total`` (if known) ``unit``, its rate and ETA, and any
    named counters (``count("validated")``) shown beside them."""

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "rows",
        stream: TextIO | None = None,
        terminal: bool | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.counters: dict[str, int] = {}
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = is_terminal(self._stream) if terminal is None else terminal
        self._interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._next_draw = self._started + (REDRAW_S if self._terminal else interval_s)
        self._closed = False
        self._bar: Any = None
        self._task: Any = None
        if self._terminal:
            self._start_bar()

    # -- the caller's side ---------------------------------------------------------------------

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._maybe_draw()

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the named counter (e.g. ``validated``, ``rejected``, ``produced``)."""
        self.counters[name] = self.counters.get(name, 0) + n
        self._maybe_draw()

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def close(self) -> None:
        """The final line (or the finished bar). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=self._description())
            self._bar.stop()
        elapsed = self._clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self._write(
            f"{self.label}: 完成 done {_number(self.done)} {self.unit} in {_duration(elapsed)}"
            f" ({_number(rate)} {self.unit}/s){self._counters_text()}"
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        elif not self._closed:  # stop the bar; no "done" line for work that failed
            self._closed = True
            if self._bar is not None:
                self._bar.stop()

    # -- drawing ------------------------------------------------------------------------------

    def line(self) -> str:
        """The plain progress line for the current state."""
        elapsed = self._clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label}: {_number(self.done)}"]
        if self.total:
            share = 100.0 * self.done / self.total
            parts[0] += f" / {_number(self.total)} {self.unit} ({share:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{_number(rate)} {self.unit}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA 预计剩余 {_duration((self.total - self.done) / rate)}")
        return " · ".join(parts) + self._counters_text()

    def _counters_text(self) -> str:
        if not self.counters:
            return ""
        return " · " + ", ".join(f"{name} {_number(n)}" for name, n in self.counters.items())

    def _maybe_draw(self) -> None:
        now = self._clock()
        if now < self._next_draw or self._closed:
            return
        if self._bar is not None:
            self._next_draw = now + REDRAW_S
            elapsed = now - self._started
            rate = f"{_number(self.done / elapsed)} {self.unit}/s" if elapsed > 0 else ""
            self._bar.update(
                self._task, completed=self.done, description=self._description(), rate=rate
            )
        else:
            self._next_draw = now + self._interval_s
            self._write(self.line())

    def _description(self) -> str:
        return self.label + self._counters_text()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self._stream),
            transient=False,
        )
        self._task = self._bar.add_task(self._description(), total=self.total, rate="")
        self._bar.start()

    def _write(self, text: str) -> None:
        if self._bar is not None and not self._closed:
            self._bar.console.print(text, markup=False, highlight=False)
            return
        self._stream.write(text + "\n")
        self._stream.flush()


@contextmanager
def phase(
    label: str, *, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
) -> Iterator[None]:
    """One step of a multi-step job: ``▶ label`` when it starts, ``✔ label (12.3 s)`` when it
    ends, ``✗ label (failed after 1.2 s)`` if it raised."""
    out = stream if stream is not None else sys.stderr
    began = clock()
    out.write(f"▶ {label}\n")
    out.flush()
    try:
        yield
    except BaseException:
        out.write(f"✗ {label} (失败 failed after {_duration(clock() - began)})\n")
        out.flush()
        raise
    out.write(f"✔ {label} ({_duration(clock() - began)})\n")
    out.flush()
