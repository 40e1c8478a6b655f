"""Local-time helpers agree with zoneinfo, including across DST transitions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from streams.rules.timeutil import clock_for, format_day, format_minute


@pytest.mark.parametrize(
    ("tz", "iso_local"),
    [
        pytest.param("Asia/Shanghai", "2020-02-10T09:59:00", id="shanghai morning"),
        pytest.param("Asia/Shanghai", "2020-02-10T00:00:00", id="shanghai local midnight"),
        pytest.param("Asia/Shanghai", "2020-02-10T23:59:00", id="shanghai before midnight"),
        pytest.param("Europe/Berlin", "2021-03-28T03:30:00", id="berlin after spring forward"),
        pytest.param("Europe/Berlin", "2021-10-31T12:00:00", id="berlin after fall back"),
        pytest.param("America/St_Johns", "2021-11-07T02:15:00", id="half-hour zone after dst"),
    ],
)
def test_minute_and_day_match_zoneinfo(tz: str, iso_local: str) -> None:
    local = datetime.fromisoformat(iso_local).replace(tzinfo=ZoneInfo(tz))
    epoch_ms = int(local.timestamp() * 1000)
    clock = clock_for(tz)
    assert clock.minute_of_day(epoch_ms) == local.hour * 60 + local.minute
    expected_day = (local.date() - datetime(1970, 1, 1).date()).days
    assert clock.local_day(epoch_ms) == expected_day
    assert clock.to_epoch_ms(expected_day, local.hour * 60 + local.minute) == epoch_ms


def test_unknown_zone_falls_back_to_shanghai() -> None:
    assert clock_for("Mars/Olympus_Mons").tz_name == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("minute", "text"),
    [pytest.param(0, "00:00", id="midnight"), pytest.param(600, "10:00", id="ten o'clock")],
)
def test_format_minute(minute: int, text: str) -> None:
    assert format_minute(minute) == text


def test_format_day() -> None:
    assert format_day(18302) == "2020-02-10"
