"""Time in report queries: local days as UTC ranges, timestamps on old and new servers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sinks.legacy import MS_SUFFIX, supports


def local_day_bounds(day: dt.date, timezone: str) -> tuple[int, int]:
    """``[start, end)`` of the local calendar ``day`` in ``timezone``, as UTC epoch seconds."""
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())


def epoch_ms_expr(column: str, version: Sequence[int]) -> str:
    """SQL giving a contract timestamp column back as epoch milliseconds (18.16 stores seconds
    plus ``<column>_ms``)."""
    if supports(version, "DateTime64"):
        return f"toUnixTimestamp64Milli({column})"
    return f"(toUInt64({column}) * 1000 + {column}{MS_SUFFIX})"


def parse_duration_s(text: str) -> int:
    """``"10m"`` → 600; ``"90s"``, ``"1h"``, ``"600"`` (seconds) too."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    factor = units.get(text[-1:], 0)
    number = text[:-1] if factor else text
    if not number.isdigit():
        raise ValueError(f"not a duration like 10m / 90s / 1h: {text!r}")
    return int(number) * (factor or 1)


def parse_local_time(text: str, timezone: str) -> int:
    """An ISO date-time (local to ``timezone`` unless it carries an offset) as epoch ms."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return int(moment.timestamp() * 1000)
