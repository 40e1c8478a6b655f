"""The shape of the benchmark's results: completion check, ratios, summary, chart inputs,
command-line options and the worker's settings round trip."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from fangxian.bench.chart import latency_series, render_chart, throughput_bars
from fangxian.bench.harness import BenchConfig, caught_up, ratios, summary_table
from fangxian.bench.worker import settings_from_json, settings_to_json
from fangxian.bench.workload import prefixed
from fangxian.cli.bench import config_from_args, register
from fangxian.core.settings import Settings

A, B = TopicPartition("gate.scans", 0), TopicPartition("gate.scans", 1)


@pytest.mark.parametrize(
    ("committed", "ends", "expected"),
    [
        pytest.param({A: 10, B: 5}, {A: 10, B: 5}, True, id="every partition at its end"),
        pytest.param({A: 10, B: 4}, {A: 10, B: 5}, False, id="one partition behind"),
        pytest.param({A: 10}, {A: 10, B: 0}, True, id="an empty partition needs no commit"),
        pytest.param({}, {A: 3}, False, id="nothing committed yet"),
    ],
)
def test_caught_up(
    committed: dict[TopicPartition, int], ends: dict[TopicPartition, int], expected: bool
) -> None:
    assert caught_up(committed, ends) is expected


def _results() -> dict[str, Any]:
    return {
        "workload": {"events": 1000},
        "ceiling": {"events_per_s": 50_000.0},
        "pipeline": {"chdb": {"events_per_s": 5_000.0}, "server": {"events_per_s": 10_000.0}},
        "two_workers": {"events_per_s": 15_000.0, "sink": "server", "speedup_vs_one": 1.5},
        "latency": [
            {
                "offered_per_s": 1000.0,
                "p50_ms": 5.0,
                "p95_ms": 9.0,
                "p99_ms": 12.0,
                "max_ms": 20.0,
                "missing": 0,
            },
            {
                "offered_per_s": 5000.0,
                "p50_ms": None,
                "p95_ms": None,
                "p99_ms": None,
                "max_ms": None,
                "missing": 10,
            },
        ],
        "rss": [
            {"residents": 100_000, "loaded_rss_mb": 100.0, "peak_rss_mb": 150.0, "sink": "server"}
        ],
        "skipped": [],
        "errors": {},
    }


def test_ratios_are_pipeline_over_ceiling_per_sink() -> None:
    assert ratios(_results()) == {
        "pipeline_chdb_over_ceiling": 0.1,
        "pipeline_server_over_ceiling": 0.2,
    }


def test_throughput_bars_in_fixed_order() -> None:
    assert [value for _, value in throughput_bars(_results())] == [50_000, 5_000, 10_000, 15_000]


def test_latency_series_keeps_missing_points_as_none() -> None:
    loads, series = latency_series(_results())
    assert loads == [1000.0, 5000.0]
    assert series["p99_ms"] == [12.0, None]


def test_summary_table_names_every_figure() -> None:
    results = _results()
    results["ratios"] = ratios(results)
    text = summary_table(results)
    for figure in ("50000.0", "5000.0", "10000.0", "0.2", "1.5", "12.0", "150.0"):
        assert figure in text


def test_chart_is_written_even_with_missing_figures(tmp_path: Path) -> None:
    results = _results() | {"pipeline": {}, "latency": []}
    path = render_chart(results, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param((), {"events": 200_000, "loads": (1000.0, 5000.0, 20000.0)}, id="defaults"),
        pytest.param(("--quick",), {"events": 20_000, "rss_residents": (100_000,)}, id="quick"),
        pytest.param(("--quick", "--events", "5000"), {"events": 5000}, id="options beat quick"),
        pytest.param(("--loads", "100,200"), {"loads": (100.0, 200.0)}, id="offered loads"),
        pytest.param(
            ("--skip-rss", "--skip-server", "--skip-latency"),
            {"skip_rss": True, "skip_server": True, "skip_latency": True},
            id="skips",
        ),
    ],
)
def test_command_line_options(argv: tuple[str, ...], expected: dict[str, Any]) -> None:
    config = config_from_args(_parse(*argv))
    assert isinstance(config, BenchConfig)
    assert {k: getattr(config, k) for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("--loads", "0,100"), id="a zero load"),
        pytest.param(("--loads", "fast"), id="not a number"),
        pytest.param(("--rss-residents", "-5"), id="a negative count"),
    ],
)
def test_command_line_refuses_bad_lists(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)


def test_settings_survive_the_trip_to_the_worker_process() -> None:
    settings = Settings(app_id="bench-x", batch_max=123).replace(
        topics=prefixed(Settings().topics, "lat.", ("gate_scans",))
    )
    assert settings_from_json(settings_to_json(settings)) == settings


def test_prefixed_changes_only_the_named_topics() -> None:
    topics = prefixed(Settings().topics, "rss.", ("residents",))
    assert topics.residents == "rss.reference.residents"
    assert topics.gate_scans == "gate.scans"
