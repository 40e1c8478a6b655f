"""The benchmark's PNG: throughput bars and latency percentiles against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PERCENTILE_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms")


def throughput_bars(results: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, events/s) for every throughput figure the run has, in a fixed order."""
    bars: list[tuple[str, float]] = []
    ceiling = results.get("ceiling") or {}
    if ceiling.get("events_per_s"):
        bars.append(("ceiling\n(consume+decode)", ceiling["events_per_s"]))
    for sink, figures in (results.get("pipeline") or {}).items():
        if figures and figures.get("events_per_s"):
            note = "\n(under profiler)" if figures.get("profiled") else ""
            bars.append((f"pipeline\n{sink}{note}", figures["events_per_s"]))
    two = results.get("two_workers") or {}
    if two.get("events_per_s"):
        bars.append((f"2 workers\n{two.get('sink', '')}", two["events_per_s"]))
    return bars


def latency_series(results: dict[str, Any]) -> tuple[list[float], dict[str, list[float | None]]]:
    """Offered loads and, per percentile key, the measured values (``None`` where missing)."""
    loads = [row["offered_per_s"] for row in results.get("latency") or []]
    series = {
        key: [row.get(key) for row in results.get("latency") or []] for key in PERCENTILE_KEYS
    }
    return loads, series


def render_chart(results: dict[str, Any], path: Path) -> Path:
    """Write the chart to ``path`` (PNG) and return it."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    bars = throughput_bars(results)
    if bars:
        labels = [label for label, _ in bars]
        heights = [value for _, value in bars]
        drawn = left.bar(range(len(heights)), heights, color="#4c72b0")
        left.set_xticks(range(len(heights)), labels, fontsize=8)
        left.bar_label(drawn, fmt="%.0f", fontsize=8)
    left.set_ylabel("events/s")
    left.set_title("Throughput (one worker unless noted)")
    loads, series = latency_series(results)
    if loads:
        for key, values in series.items():
            points = [(x, y) for x, y in zip(loads, values, strict=True) if y is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                right.plot(xs, ys, marker="o", label=key.removesuffix("_ms"))
        right.set_xscale("log")
        right.set_yscale("log")
        right.legend()
    right.set_xlabel("offered load, gate scans/s")
    right.set_ylabel("scan → decision latency, ms")
    right.set_title("End-to-end latency")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
