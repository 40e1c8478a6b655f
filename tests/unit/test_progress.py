"""Progress lines when the output is not a terminal: periodic, with rate and ETA, then a final
line; and phases."""

from __future__ import annotations

import io

import pytest

from fangxian.core.progress import Progress, phase


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("total", "steps", "expected_lines"),
    [
        pytest.param(1000, 10, 3, id="10 s of work, a line every 5 s + the final line"),
        pytest.param(None, 10, 3, id="unknown total: no percentage, no ETA"),
        pytest.param(1000, 1, 1, id="work shorter than the interval: only the final line"),
    ],
)
def test_plain_lines_every_interval_then_a_final_line(
    total: int | None, steps: int, expected_lines: int
) -> None:
    out, clock = io.StringIO(), FakeClock()
    with Progress("读取 read", total=total, stream=out, interval_s=5.0, clock=clock) as progress:
        for _ in range(steps):
            clock.now += 1.0
            progress.advance(100)
            progress.count("validated", 99)
    lines = out.getvalue().splitlines()
    assert len(lines) == expected_lines
    assert lines[-1].startswith("读取 read: 完成 done ")
    assert "validated" in lines[-1]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # no bar codes in a log
    if expected_lines > 1:
        first = lines[0]
        assert "100 rows/s" in first
        assert ("ETA" in first) == (total is not None)
        assert ("%" in first) == (total is not None)


def test_failed_work_gets_no_done_line() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress("x", stream=out, terminal=False):
        raise RuntimeError("broken")
    assert "完成 done" not in out.getvalue()


def test_a_terminal_gets_a_bar_not_lines() -> None:
    out = io.StringIO()
    with Progress("load", total=10, stream=out, terminal=True) as progress:
        progress.advance(10)
    assert "load" in out.getvalue()


def test_phase_says_start_end_and_failure() -> None:
    out, clock = io.StringIO(), FakeClock()
    with phase("bench: ceiling", stream=out, clock=clock):
        clock.now += 2.5
    with pytest.raises(ValueError), phase("bench: latency", stream=out, clock=clock):
        raise ValueError("x")
    assert out.getvalue().splitlines() == [
        "▶ bench: ceiling",
        "✔ bench: ceiling (2.5 s)",
        "▶ bench: latency",
        "✗ bench: latency (失败 failed after 0.0 s)",
    ]
