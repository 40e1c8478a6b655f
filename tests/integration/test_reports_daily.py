"""The daily report from ClickHouse (chdb and the 18.16 server) against the same figures
computed in plain Python from the scripted day's event dicts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_reports_scenario import (
    COMMUNITY_A,
    COMMUNITY_B,
    COMMUNITY_C,
    DAY,
    RETENTION_DAYS,
    TIMEZONE,
    Scenario,
    build_scenario,
    db_fixture,  # noqa: F401  (the ``db`` fixture)
    expected_report,
    write_scenario,
)

from fangxian import cli
from sinks import Writer, migrate, open_writer
from sinks.migrate import load_migrations
from sinks.reports import DailyReport, Scope, build_report

SCOPES = [
    pytest.param(Scope("community", COMMUNITY_A), lambda c: c == COMMUNITY_A, id="community A"),
    pytest.param(Scope("community", COMMUNITY_C), lambda c: c == COMMUNITY_C, id="community C"),
    pytest.param(Scope("county", "350100"), lambda c: c[2:8] == "350100", id="county 350100"),
]


def figures_of(report: DailyReport) -> dict[str, Any]:
    return {
        "figures": report.figures,
        "symptoms": report.symptoms,
        "alerts": sorted((a.alert_type, a.severity, a.count) for a in report.alerts),
        "decisions": report.decisions,
        "passes_by_hour": report.passes_by_hour,
    }


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build_scenario()


@pytest.mark.parametrize(("scope", "in_scope"), SCOPES)
def test_every_figure_matches_the_events(
    db: Writer, scenario: Scenario, scope: Scope, in_scope: Callable[[str], bool]
) -> None:
    write_scenario(db, scenario)
    report = build_report(db, scope, DAY, TIMEZONE)
    assert figures_of(report) == expected_report(scenario, in_scope)
    assert report.figures["entries"] > 0 and report.figures["under_observation"] > 0


def test_redelivery_leaves_every_figure_unchanged(db: Writer, scenario: Scenario) -> None:
    write_scenario(db, scenario)
    scopes = [Scope("community", c) for c in (COMMUNITY_A, COMMUNITY_B)] + [
        Scope("county", "350100")
    ]
    before = [figures_of(build_report(db, s, DAY, TIMEZONE)) for s in scopes]
    write_scenario(db, scenario)  # the whole day again (a crash before the commit)
    db.write("gate_scans", scenario.scans[50:120])  # and part of it a third time
    db.write("alerts", scenario.alerts[:10])
    db.write("health_reports", scenario.reports[:10])
    after = [figures_of(build_report(db, s, DAY, TIMEZONE)) for s in scopes]
    assert after == before


def test_county_figures_are_sums_and_unions_of_its_communities(
    db: Writer, scenario: Scenario
) -> None:
    write_scenario(db, scenario)
    county = build_report(db, Scope("county", "350100"), DAY, TIMEZONE)
    parts = [
        build_report(db, Scope("community", c), DAY, TIMEZONE) for c in (COMMUNITY_A, COMMUNITY_B)
    ]
    for key in ("communities", "entries", "exits", "fever_rechecks", "reports_received"):
        assert county.figures[key] == sum(p.figures[key] for p in parts), key
    assert county.passes_by_hour == [
        sum(h) for h in zip(*(p.passes_by_hour for p in parts), strict=True)
    ]
    # vehicles: a vehicle seen in both communities is one vehicle of the county
    in_county = {c for c in (COMMUNITY_A, COMMUNITY_B)}
    assert (
        county.figures["vehicles"]
        == expected_report(scenario, lambda c: c in in_county)["figures"]["vehicles"]
    )
    assert county.figures["vehicles"] < sum(p.figures["vehicles"] for p in parts)


def test_rows_written_before_the_rollups_existed_are_backfilled(
    chdb_url: str, scenario: Scenario
) -> None:
    opened = open_writer(chdb_url)
    try:
        migrate(opened, retention_days=RETENTION_DAYS, migrations=load_migrations()[:2])
        write_scenario(opened, scenario)
        applied = migrate(opened, retention_days=RETENTION_DAYS)
        assert applied[0] == "0003_report_rollups"
        assert applied == [m.name for m in load_migrations()[2:]]
        report = build_report(opened, Scope("community", COMMUNITY_A), DAY, TIMEZONE)
    finally:
        opened.close()
    assert figures_of(report) == expected_report(scenario, lambda c: c == COMMUNITY_A)


def test_a_day_without_events_is_all_zero(db: Writer, scenario: Scenario) -> None:
    write_scenario(db, scenario)
    report = build_report(
        db, Scope("community", COMMUNITY_A), DAY + dt.timedelta(days=30), TIMEZONE
    )
    assert set(report.figures.values()) == {0} and sum(report.passes_by_hour) == 0
    assert report.alerts == []


# --- the command line and its output formats (chdb) ---------------------------------------------


@pytest.fixture
def loaded_chdb(chdb_url: str, scenario: Scenario) -> str:
    opened = open_writer(chdb_url)
    try:
        migrate(opened, retention_days=RETENTION_DAYS)
        write_scenario(opened, scenario)
    finally:
        opened.close()
    return chdb_url


def run_report(url: str, out: Path, fmt: str, *whose: str) -> str:
    argv = [
        "--clickhouse",
        url,
        "report",
        *whose,
        "--date",
        DAY.isoformat(),
        "--format",
        fmt,
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    return out.read_text(encoding="utf-8")


def test_the_json_report_carries_the_figures_and_labels(
    loaded_chdb: str, scenario: Scenario, tmp_path: Path
) -> None:
    data = json.loads(
        run_report(loaded_chdb, tmp_path / "r.json", "json", "--community", COMMUNITY_A)
    )
    expected = expected_report(scenario, lambda c: c == COMMUNITY_A)
    assert data["figures"] == expected["figures"]
    assert data["passes_by_hour"] == expected["passes_by_hour"]
    assert data["date"] == "2020-02-15" and data["code"] == COMMUNITY_A
    assert data["labels"]["entries"] == "进入人次 entries"


def test_the_csv_report_has_one_line_per_figure(
    loaded_chdb: str, scenario: Scenario, tmp_path: Path
) -> None:
    text = run_report(loaded_chdb, tmp_path / "r.csv", "csv", "--county", "350100")
    lines = list(csv.DictReader(io.StringIO(text)))
    figures = {r["key"]: int(r["value"]) for r in lines if r["section"] == "figures"}
    assert figures == expected_report(scenario, lambda c: c[2:8] == "350100")["figures"]
    hours = [int(r["value"]) for r in lines if r["section"] == "passes_by_hour"]
    assert hours == expected_report(scenario, lambda c: c[2:8] == "350100")["passes_by_hour"]


def test_the_html_report_is_self_contained_with_an_svg_chart(
    loaded_chdb: str, scenario: Scenario, tmp_path: Path
) -> None:
    page = run_report(loaded_chdb, tmp_path / "r.html", "html", "--community", COMMUNITY_A)
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    bars = ET.fromstring(svg).findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 24
    heights = [float(b.get("height", "nan")) for b in bars]
    hours = expected_report(scenario, lambda c: c == COMMUNITY_A)["passes_by_hour"]
    assert heights.index(max(heights)) == hours.index(max(hours))
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "社区疫情信息报表" in page
    tokens = {s["subject_id"] for s in scenario.scans} | {
        r["resident_id"] for r in scenario.reports
    }
    assert not any(t in page for t in tokens)
