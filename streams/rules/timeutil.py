"""Local-time arithmetic on epoch milliseconds, for the hot path.

Curfews and report deadlines are in the community's local time. Building ``datetime`` objects per
event is too slow, so a :class:`LocalClock` caches the UTC offset of its zone per 15-minute bucket
of UTC time (time-zone transitions fall on quarter hours) and everything else is int arithmetic.
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000
DEFAULT_TIMEZONE = "Asia/Shanghai"
_BUCKET_MS = 15 * MS_PER_MINUTE
_MAX_CACHED_BUCKETS = 8192


class LocalClock:
    """Converts epoch ms to local minute-of-day / local day number for one time zone."""

    __slots__ = ("_offsets", "_zone", "tz_name")

    def __init__(self, tz_name: str) -> None:
        self.tz_name = tz_name
        self._zone = ZoneInfo(tz_name)
        self._offsets: dict[int, int] = {}

    def offset_ms(self, epoch_ms: int) -> int:
        """UTC offset of the zone at ``epoch_ms``, in ms."""
        bucket = epoch_ms // _BUCKET_MS
        offset = self._offsets.get(bucket)
        if offset is None:
            moment = datetime.fromtimestamp(bucket * _BUCKET_MS / MS_PER_SECOND, tz=self._zone)
            delta = moment.utcoffset()
            offset = 0 if delta is None else int(delta.total_seconds() * MS_PER_SECOND)
            if len(self._offsets) >= _MAX_CACHED_BUCKETS:
                self._offsets.clear()
            self._offsets[bucket] = offset
        return offset

    def minute_of_day(self, epoch_ms: int) -> int:
        """Local minute of the day (0..1439) at ``epoch_ms``."""
        return ((epoch_ms + self.offset_ms(epoch_ms)) % MS_PER_DAY) // MS_PER_MINUTE

    def local_day(self, epoch_ms: int) -> int:
        """Local calendar day at ``epoch_ms`` as days since 1970-01-01 (the contract's date int)."""
        return (epoch_ms + self.offset_ms(epoch_ms)) // MS_PER_DAY

    def to_epoch_ms(self, day: int, minute: int) -> int:
        """Epoch ms of local ``day`` at local ``minute`` (for a DST gap: the instant after it)."""
        naive = day * MS_PER_DAY + minute * MS_PER_MINUTE
        guess = naive - self.offset_ms(naive)
        return naive - self.offset_ms(guess)


_clocks: dict[str, LocalClock] = {}


def clock_for(tz_name: str) -> LocalClock:
    """The cached clock of ``tz_name``; an unknown zone falls back to Asia/Shanghai, logged once."""
    clock = _clocks.get(tz_name)
    if clock is None:
        try:
            clock = LocalClock(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown time zone %r, using %s", tz_name, DEFAULT_TIMEZONE)
            clock = clock_for(DEFAULT_TIMEZONE)
        _clocks[tz_name] = clock
    return clock


def format_minute(minute: int) -> str:
    """``HH:MM`` of a minute of the day."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def format_day(day: int) -> str:
    """``YYYY-MM-DD`` of a day number (not on the hot path: used in alert text)."""
    return datetime.fromtimestamp(day * 86_400, tz=ZoneInfo("UTC")).strftime("%Y-%m-%d")
