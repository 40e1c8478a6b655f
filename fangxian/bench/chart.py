"""The benchmark's PNG: throughput bars and latency percentiles against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LATENCY_CLOCKS = ("client", "broker", "decide_lag")
LATENCY_KEYS = ("p50_ms", "p99_ms")
_COLOUR = {"client": "#4c72b0", "broker": "#dd8452", "decide_lag": "#55a868"}
_LINE = {"p50": ("--", "o"), "p99": ("-", "s")}
CLIENT_LABELS = {"confluent_kafka": "confluent-kafka", "aiokafka": "aiokafka"}


def throughput_bars(results: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, events/s) for every throughput figure the run has, in a fixed order."""
    bars: list[tuple[str, float]] = []
    for key, label in (
        ("consume_only", "consume only"),
        ("raw_ceiling", "raw ceiling"),
        ("validating_decode", "+ codec"),
    ):
        for client, figures in (results.get(key) or {}).items():
            if isinstance(figures, dict) and figures.get("events_per_s"):
                bars.append(
                    (f"{label}\n{CLIENT_LABELS.get(client, client)}", figures["events_per_s"])
                )
    for sink, figures in (results.get("pipeline") or {}).items():
        if figures and figures.get("events_per_s"):
            note = "\n(under profiler)" if figures.get("profiled") else ""
            bars.append((f"pipeline\n{sink}{note}", figures["events_per_s"]))
    decide = results.get("decide") or {}
    if decide.get("events_per_s"):
        bars.append(("decide stage", decide["events_per_s"]))
    for sink, figures in (results.get("sink") or {}).items():
        if figures and figures.get("rows_per_s"):
            bars.append((f"sink stage\n{sink} (rows/s)", figures["rows_per_s"]))
    two = results.get("two_workers") or {}
    if two.get("events_per_s"):
        bars.append((f"2 workers\n{two.get('sink', '')}", two["events_per_s"]))
    return bars


def latency_series(
    results: dict[str, Any],
) -> tuple[list[float], dict[str, list[float | None]]]:
    """Offered loads and, per ``clock percentile`` (e.g. ``broker p99``), the measured values
    (``None`` where missing)."""
    rows = results.get("latency") or []
    loads = [row["offered_per_s"] for row in rows]
    series: dict[str, list[float | None]] = {}
    for clock in LATENCY_CLOCKS:
        for key in LATENCY_KEYS:
            values = [(row.get(clock) or {}).get(key) for row in rows]
            if any(v is not None for v in values):
                series[f"{clock} {key.removesuffix('_ms')}"] = values
    return loads, series


def stage_note(results: dict[str, Any]) -> str:
    """One line under the throughput bars: the decide ratio and the restore time."""
    parts = []
    ratio = results.get("ratio_decide_to_raw_ceiling")
    if ratio is not None:
        parts.append(f"decide / raw ceiling = {ratio}")
    restore = results.get("restore") or {}
    if restore.get("restore_seconds") is not None:
        parts.append(f"restore {restore.get('keys'):,} keys: {restore['restore_seconds']} s")
    return "; ".join(parts)


def render_chart(results: dict[str, Any], path: Path) -> Path:
    """Write the chart to ``path`` (PNG) and return it."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.2))
    bars = throughput_bars(results)
    if bars:
        labels = [label for label, _ in bars]
        heights = [value for _, value in bars]
        drawn = left.bar(range(len(heights)), heights, color="#4c72b0")
        left.set_xticks(range(len(heights)), labels, fontsize=7, rotation=30, ha="right")
        left.bar_label(drawn, fmt="%.0f", fontsize=8)
    left.set_ylabel("events/s (sink: rows/s)")
    note = stage_note(results)
    left.set_title("Throughput (one worker unless noted)" + (f"\n{note}" if note else ""))
    loads, series = latency_series(results)
    if loads:
        for label, values in series.items():
            points = [(x, y) for x, y in zip(loads, values, strict=True) if y is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                clock, key = label.split()
                line, marker = _LINE[key]
                right.plot(xs, ys, line, marker=marker, color=_COLOUR[clock], label=label)
        right.set_xscale("log")
        right.set_yscale("log")
        right.legend(fontsize=7)
    right.set_xlabel("offered load, gate scans/s")
    right.set_ylabel("scan → decision latency, ms")
    right.set_title("Scan → decision: client clock, broker clock, worker's batch lag")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
