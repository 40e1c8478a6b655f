"""Pure parts of reporting: local days, durations, contact matching, rendering, publishing,
the roll-up definitions read from the migration."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import pytest

from fangxian.reporting.contacts import Pass, match_contacts, merge_windows
from sinks.reports.daily import DECISIONS, FIGURES, SYMPTOMS, AlertCount, DailyReport, Scope
from sinks.reports.render import render_csv, render_html, render_json
from sinks.reports.rollups import SUBJECT_COLUMNS, rollups
from sinks.reports.sqltime import local_day_bounds, parse_duration_s, parse_local_time
from streams.daily_reports import publish_report, report_key


@pytest.mark.parametrize(
    ("day", "zone", "start_utc", "hours"),
    [
        pytest.param(
            dt.date(2020, 2, 15), "Asia/Shanghai", "2020-02-14T16:00:00", 24, id="Shanghai is UTC+8"
        ),
        pytest.param(
            dt.date(2020, 3, 8),
            "America/New_York",
            "2020-03-08T05:00:00",
            23,
            id="a DST day is 23 h",
        ),
        pytest.param(
            dt.date(2020, 2, 15), "Asia/Kolkata", "2020-02-14T18:30:00", 24, id="half-hour offset"
        ),
    ],
)
def test_a_local_day_is_a_utc_range(day: dt.date, zone: str, start_utc: str, hours: int) -> None:
    start, end = local_day_bounds(day, zone)
    assert dt.datetime.fromtimestamp(start, dt.UTC).isoformat() == start_utc + "+00:00"
    assert end - start == hours * 3600


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("10m", 600, id="minutes"),
        pytest.param("90s", 90, id="seconds"),
        pytest.param("1h", 3600, id="hours"),
        pytest.param("600", 600, id="bare seconds"),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", [pytest.param("ten", id="words"), pytest.param("5d", id="days")])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(text)


def test_a_naive_time_is_local() -> None:
    assert parse_local_time("2020-02-15T08:00", "Asia/Shanghai") == 1_581_724_800_000
    assert parse_local_time("2020-02-15T00:00+00:00", "Asia/Shanghai") == 1_581_724_800_000


@pytest.mark.parametrize(
    ("times", "window", "merged"),
    [
        pytest.param([100, 50], 10, [(40, 60), (90, 110)], id="apart stay apart, sorted"),
        pytest.param([100, 115], 10, [(90, 125)], id="overlapping merge"),
        pytest.param([100, 120], 10, [(90, 130)], id="touching merge"),
    ],
)
def test_merge_windows(times: list[int], window: int, merged: list[tuple[int, int]]) -> None:
    assert merge_windows(times, window) == merged


def p(gate: str, t: int, who: str = "subject-token", community: str = "c1") -> Pass:
    return Pass(community, gate, "IN", "RESIDENT", who, t)


@pytest.mark.parametrize(
    ("other", "near"),
    [
        pytest.param(p("g0", 1_600, "x"), 1_000, id="within the window of the first pass"),
        pytest.param(p("g0", 2_000, "x"), 1_000, id="exactly at the window edge"),
        pytest.param(p("g0", 2_001, "x"), None, id="one ms outside"),
        pytest.param(p("g1", 1_000, "x"), None, id="other gate"),
        pytest.param(p("g0", 1_000, "x", community="c2"), None, id="same gate id, other community"),
        pytest.param(p("g0", 4_300, "x"), 5_000, id="nearest of two passes"),
    ],
)
def test_match_contacts(other: Pass, near: int | None) -> None:
    trajectory = [p("g0", 1_000), p("g0", 5_000)]
    found = match_contacts(trajectory, [other], window_ms=1_000)
    assert [c.near_pass_time for c in found] == ([] if near is None else [near])


def sample_report() -> DailyReport:
    figures = {k: i + 1 for i, k in enumerate(FIGURES)}
    return DailyReport(
        scope=Scope("community", "91350100M000100Y43"),
        date=dt.date(2020, 2, 15),
        timezone="Asia/Shanghai",
        figures=figures,
        symptoms={k: i for i, k in enumerate(SYMPTOMS)},
        alerts=[AlertCount("FEVER_RECHECK", "WARNING", 3)],
        decisions={k: 10 * i for i, k in enumerate(DECISIONS)},
        passes_by_hour=[h * 2 for h in range(24)],
    )


def test_csv_has_every_figure_with_both_labels() -> None:
    lines = list(csv.DictReader(io.StringIO(render_csv(sample_report()))))
    figures = {r["key"]: r for r in lines if r["section"] == "figures"}
    assert {k: int(r["value"]) for k, r in figures.items()} == sample_report().figures
    assert (
        figures["entries"]["label_zh"] == "进入人次" and figures["entries"]["label_en"] == "entries"
    )
    assert [
        int(r["value"]) for r in lines if r["section"] == "passes_by_hour"
    ] == sample_report().passes_by_hour


def test_json_round_trips_the_report() -> None:
    data = json.loads(render_json(sample_report()))
    assert data["figures"] == sample_report().figures
    assert data["alerts"] == [{"alert_type": "FEVER_RECHECK", "severity": "WARNING", "count": 3}]
    assert data["title"].startswith("社区疫情信息报表")


def test_html_bars_grow_with_the_passes() -> None:
    page = render_html(sample_report())
    assert page.count("<rect ") == 24 and "<script" not in page
    heights = [
        float(chunk.split('"')[0]) for chunk in page.split('height="')[2:]
    ]  # after the svg's own
    assert heights == sorted(heights) and heights[0] == 0 < heights[-1]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = False

    def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.sent.append((topic, value, key))
        return self

    def get(self, timeout: float | None = None) -> None:
        return None

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True

    def close(self) -> None:
        return None


def test_publish_sends_the_json_keyed_by_code_and_date() -> None:
    producer = FakeProducer()
    publish_report(sample_report(), producer, "reports.daily")
    ((topic, value, key),) = producer.sent
    assert topic == "reports.daily" and producer.flushed
    assert key == b"91350100M000100Y43:2020-02-15" == report_key(sample_report())
    assert json.loads(value)["figures"] == sample_report().figures


@pytest.mark.parametrize(
    ("scope", "condition"),
    [
        pytest.param(Scope("community", "x"), "community_id = %(code)s", id="community"),
        pytest.param(
            Scope("county", "350100"), "substring(community_id, 3, 6) = %(code)s", id="county"
        ),
    ],
)
def test_scope_condition(scope: Scope, condition: str) -> None:
    assert scope.condition() == condition


def test_every_rollup_is_read_from_the_migration() -> None:
    found = {r.target: r for r in rollups()}
    assert set(found) == set(SUBJECT_COLUMNS)
    assert found["health_day"].source == "health_reports"
    sql = found["gate_minute"].select_where("subject_id = 'x'", "db")
    assert "FROM db.gate_scans\nWHERE subject_id = 'x'\nGROUP BY" in sql
