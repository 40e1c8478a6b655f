"""The shape of the benchmark's results: completion check, ratios, summary, chart inputs,
command-line options and the worker's settings round trip."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from fangxian.bench.ceiling import best_client, fastest
from fangxian.bench.chart import latency_series, render_chart, stage_note, throughput_bars
from fangxian.bench.harness import (
    BenchConfig,
    add_ratios,
    caught_up,
    gc_labels,
    ratios,
    summary_table,
)
from fangxian.bench.latency import _Load, load_figures
from fangxian.bench.loadgen import event_id, id_prefix, new_base, seq_of
from fangxian.bench.stats import histogram_delta, histogram_summary
from fangxian.bench.worker import lag_histogram, settings_from_json, settings_to_json
from fangxian.bench.workload import prefixed
from fangxian.cli.bench import config_from_args, register
from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, contract

SCAN = contract.examples("GateScan")[0]

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


def _lat(p50: float | None, p99: float | None) -> dict[str, float | None]:
    return {"p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "max_ms": p99}


def _results() -> dict[str, Any]:
    return {
        "workload": {"events": 1000},
        "raw_ceiling": {
            "confluent_kafka": {"events_per_s": 100_000.0, "complete": True},
            "aiokafka": {"events_per_s": 80_000.0, "complete": True},
            "best": "confluent_kafka",
            "best_events_per_s": 100_000.0,
        },
        "validating_decode": {
            "confluent_kafka": {"events_per_s": 50_000.0, "complete": True},
            "aiokafka": {"events_per_s": 40_000.0, "complete": True},
        },
        "pipeline": {"chdb": {"events_per_s": 5_000.0}, "server": {"events_per_s": 10_000.0}},
        "two_workers": {"events_per_s": 15_000.0, "sink": "server", "speedup_vs_one": 1.5},
        "latency": [
            {
                "offered_per_s": 1000.0,
                "achieved_per_s": 998.0,
                "missing": 0,
                "client": _lat(5.0, 12.0),
                "broker": _lat(3.0, 8.0),
                "decide_lag": {"batches": 10, "mean_ms": 2.0, **_lat(1.5, 4.5)},
            },
            {
                "offered_per_s": 5000.0,
                "achieved_per_s": 4000.0,
                "missing": 10,
                "client": _lat(None, None),
                "broker": _lat(None, None),
                "decide_lag": None,
            },
        ],
        "rss": [
            {"residents": 100_000, "loaded_rss_mb": 100.0, "peak_rss_mb": 150.0, "sink": "server"}
        ],
        "skipped": [],
        "errors": {},
    }


def test_ratios_are_against_the_best_raw_ceiling() -> None:
    assert ratios(_results()) == {
        "validating_decode_confluent_kafka_over_raw_ceiling": 0.5,
        "validating_decode_aiokafka_over_raw_ceiling": 0.4,
        "pipeline_chdb_over_raw_ceiling": 0.05,
        "pipeline_server_over_raw_ceiling": 0.1,
        "ratio_decide_to_raw_ceiling": None,
    }


def test_decide_ratio_once_the_decide_stage_is_measured() -> None:
    results = _results() | {"decide": {"events_per_s": 60_000.0}}
    assert ratios(results)["ratio_decide_to_raw_ceiling"] == 0.6


def _staged() -> dict[str, Any]:
    """The results with the stage phases: decide alone, sink alone (both sinks), restore."""
    return _results() | {
        "decide": {"events_per_s": 30_000.0, "events": 1000, "seconds": 0.033},
        "sink": {
            "chdb": {"rows_per_s": 120_000.0, "rows": 2400},
            "server": {"rows_per_s": 90_000.0, "rows": 2400},
        },
        "restore": {"keys": 200_000, "restore_seconds": 3.5, "records_per_s": 57_143},
    }


def test_add_ratios_fills_the_top_level_decide_ratio() -> None:
    results = add_ratios(_staged())
    assert results["ratio_decide_to_raw_ceiling"] == 0.3
    assert results["ratios"]["ratio_decide_to_raw_ceiling"] == 0.3
    assert results["ratios"]["pipeline_server_over_raw_ceiling"] == 0.1


def test_decide_ratio_is_none_without_a_decide_phase() -> None:
    assert add_ratios(_results())["ratio_decide_to_raw_ceiling"] is None


def test_stage_figures_in_the_summary_table() -> None:
    text = summary_table(add_ratios(_staged()))
    for figure in (
        "decide stage 决策阶段, events/s",
        "30000.0",
        "sink stage 入库阶段 chdb, rows/s",
        "120000.0",
        "90000.0",
        "restore 状态恢复 200000 keys, s",
        "3.5 (57143 records/s)",
        "ratio_decide_to_raw_ceiling",
        "0.3",
    ):
        assert figure in text


def test_stage_bars_and_note_on_the_chart(tmp_path: Path) -> None:
    results = add_ratios(_staged())
    labels, values = zip(*throughput_bars(results), strict=True)
    assert labels[-4:] == (
        "decide stage",
        "sink stage\nchdb (rows/s)",
        "sink stage\nserver (rows/s)",
        "2 workers\nserver",
    )
    assert values[-4:] == (30_000.0, 120_000.0, 90_000.0, 15_000.0)
    assert stage_note(results) == "decide / raw ceiling = 0.3; restore 200,000 keys: 3.5 s"
    assert stage_note(_results()) == ""
    assert render_chart(results, tmp_path / "c.png").stat().st_size > 10_000


def test_no_raw_ceiling_means_no_ratios() -> None:
    results = _results() | {"raw_ceiling": {"best": None, "best_events_per_s": None}}
    assert set(ratios(results).values()) == {None}


@pytest.mark.parametrize(
    ("per_client", "expected"),
    [
        pytest.param(
            {
                "a": {"events_per_s": 5.0, "complete": True},
                "b": {"events_per_s": 7.0, "complete": True},
            },
            ("b", 7.0),
            id="the faster client",
        ),
        pytest.param(
            {
                "a": {"events_per_s": 5.0, "complete": True},
                "b": {"events_per_s": 9.0, "complete": False},
            },
            ("a", 5.0),
            id="an incomplete run does not count",
        ),
        pytest.param({}, (None, None), id="no run"),
    ],
)
def test_best_client(per_client: dict[str, Any], expected: tuple[Any, Any]) -> None:
    assert best_client(per_client) == expected


@pytest.mark.parametrize(
    ("modes", "labels"),
    [
        pytest.param(("default", "freeze"), ["default", "freeze"], id="each once"),
        pytest.param(
            ("default", "freeze", "default", "freeze"),
            ["default", "freeze", "default #2", "freeze #2"],
            id="repeats get numbered",
        ),
    ],
)
def test_gc_labels(modes: tuple[str, ...], labels: list[str]) -> None:
    assert gc_labels(modes) == labels


def test_fastest_run_is_the_ceiling_and_every_run_is_kept() -> None:
    runs = [
        {"events_per_s": 9.0, "complete": False},
        {"events_per_s": 5.0, "complete": True},
        {"events_per_s": 7.0, "complete": True},
    ]
    assert fastest(runs) == {
        "events_per_s": 7.0,
        "complete": True,
        "runs": [9.0, 5.0, 7.0],
        "runs_per_cpu_s": [None, None, None],
    }


def test_throughput_bars_in_fixed_order() -> None:
    labels, values = zip(*throughput_bars(_results()), strict=True)
    assert list(values) == [100_000, 80_000, 50_000, 40_000, 5_000, 10_000, 15_000]
    assert labels[0] == "raw ceiling\nconfluent-kafka"


def test_latency_series_has_both_clocks_and_keeps_missing_points_as_none() -> None:
    loads, series = latency_series(_results())
    assert loads == [1000.0, 5000.0]
    assert series["client p99"] == [12.0, None]
    assert series["broker p50"] == [3.0, None]
    assert series["decide_lag p99"] == [4.5, None]


def test_summary_table_names_every_figure() -> None:
    results = _results()
    results["ratios"] = ratios(results)
    text = summary_table(results)
    for figure in (
        "100000.0",
        "80000.0",
        "50000.0",
        "10000.0",
        "0.05",
        "1.5",
        "12.0",
        "8.0",
        "4.5",
    ):
        assert figure in text
    assert "150.0" in text


def test_chart_is_written_even_with_missing_figures(tmp_path: Path) -> None:
    results = _results() | {"pipeline": {}, "latency": [], "raw_ceiling": {}}
    path = render_chart(results, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_with_every_figure(tmp_path: Path) -> None:
    path = render_chart(_results(), tmp_path / "chart.png")
    assert path.stat().st_size > 10_000


def _sent(sent_ms: list[float], append_ms: list[int | None]) -> dict[str, Any]:
    return {"sent": len(sent_ms), "seconds": 1.0, "sent_ms": sent_ms, "append_ms": append_ms}


def test_load_figures_on_both_clocks() -> None:
    load = _Load(prefix="p")
    # seq 0: client 10 ms, broker 4 ms; seq 1: client 30 ms, scan not broker-stamped;
    # seq 2: never decided
    load.received_ms.update({0: 1010.0, 1: 1030.0})
    load.appended_ms.update({0: 5004, 1: 5020})
    figures = load_figures(3.0, _sent([1000.0, 1000.0, 1000.0], [5000, None, 5001]), load, None)
    assert figures["sent"] == 3 and figures["decided"] == 2 and figures["missing"] == 1
    assert figures["client"]["max_ms"] == 30.0 and figures["client"]["p50_ms"] == 20.0
    assert figures["broker"] == {"p50_ms": 4.0, "p95_ms": 4.0, "p99_ms": 4.0, "max_ms": 4.0}
    assert figures["broker_stamped"] == 1
    assert figures["decide_lag"] is None


def test_event_ids_carry_their_load_and_sequence() -> None:
    base, other = new_base(), new_base()
    eid = event_id(base, 123_456)
    assert seq_of(eid, id_prefix(base)) == 123_456
    assert seq_of(eid, id_prefix(other)) is None
    assert Codec().decode("GateScan", Codec().encode("GateScan", {**SCAN, "event_id": eid}))


def test_worker_reports_its_decision_lag_histogram() -> None:
    metrics = Metrics.create()
    for seconds in (0.002, 0.003, 0.004, 0.2):
        metrics.decision_lag_seconds.observe(seconds)
    before = lag_histogram(metrics)
    metrics.decision_lag_seconds.observe(0.03)
    summary = histogram_summary(histogram_delta(lag_histogram(metrics), before))
    assert summary["batches"] == 1
    assert summary["mean_ms"] == 30.0
    assert 25.0 <= (summary["p50_ms"] or 0) <= 50.0
    assert histogram_summary(before)["batches"] == 4


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
            ("--worker-gc", "default,freeze-tuned"),
            {"worker_gc": ("default", "freeze-tuned")},
            id="gc modes to compare",
        ),
        pytest.param((), {"worker_gc": ("freeze",)}, id="the collector as the decide stage runs"),
        pytest.param(
            ("--skip-rss", "--skip-server", "--skip-latency"),
            {"skip_rss": True, "skip_server": True, "skip_latency": True},
            id="skips",
        ),
        pytest.param(
            (),
            {
                "skip_decide": False,
                "skip_sink": False,
                "skip_restore": False,
                "restore_keys": 1_000_000,
            },
            id="stage phases and 1M restore keys by default",
        ),
        pytest.param(("--quick",), {"restore_keys": 100_000}, id="quick restores 100k keys"),
        pytest.param(
            ("--quick", "--restore-keys", "200000"), {"restore_keys": 200_000}, id="restore keys"
        ),
        pytest.param(
            ("--skip-decide", "--skip-sink", "--skip-restore"),
            {"skip_decide": True, "skip_sink": True, "skip_restore": True},
            id="stage skips",
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
        pytest.param(("--worker-gc", "off"), id="an unknown gc mode"),
        pytest.param(("--restore-keys", "0"), id="zero restore keys"),
        pytest.param(("--restore-keys", "many"), id="restore keys not a number"),
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
