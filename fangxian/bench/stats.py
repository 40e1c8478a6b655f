"""Pure figures: percentiles, latency summaries, throughput and ratios. No I/O, no clocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PERCENTILES = (50.0, 95.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values`` by linear interpolation between closest
    ranks (numpy's default ``linear`` method). Raises ``ValueError`` on an empty input."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 / max in milliseconds (``None`` each when nothing was measured)."""
    if not latencies_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(latencies_ms)
    summary: dict[str, float | None] = {
        f"p{q:g}_ms": round(percentile(ordered, q), 2) for q in PERCENTILES
    }
    summary["max_ms"] = round(ordered[-1], 2)
    return summary


def rate(count: float, seconds: float) -> float:
    """``count / seconds`` rounded to a whole number per second; 0 for an empty interval."""
    return float(round(count / seconds)) if seconds > 0 else 0.0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to three places, ``None`` when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


#: a Prometheus histogram as the worker reports it: cumulative bucket counts by upper bound
#: (``le``, ascending, the last ``inf``), the observation count and their sum (seconds)
Histogram = dict[str, Any]


def histogram_delta(after: Histogram, before: Histogram) -> Histogram:
    """The observations made between two snapshots of one histogram."""
    return {
        "buckets": [
            [le, count - old]
            for (le, count), (_, old) in zip(after["buckets"], before["buckets"], strict=True)
        ],
        "count": after["count"] - before["count"],
        "sum": after["sum"] - before["sum"],
    }


def histogram_quantile(q: float, buckets: Sequence[Sequence[float]]) -> float | None:
    """The ``q``-quantile (0–1) estimated from cumulative buckets as Prometheus'
    ``histogram_quantile`` does: linear within the bucket holding the rank (the first bucket
    starts at 0); a rank in the ``+Inf`` bucket gives the highest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def histogram_summary(histogram: Histogram) -> dict[str, float | None]:
    """Batches observed, mean and p50/p95/p99 in milliseconds (``None`` when empty), and how
    many batches were above the highest finite bucket (their percentiles are that bound)."""
    count = histogram["count"]
    summary: dict[str, float | None] = {"batches": count}
    finite = [(le, n) for le, n in histogram["buckets"] if not math.isinf(le)]
    # a percentile in the +Inf bucket reads as the top bound: say how many were above it
    summary["above_top_bucket"] = count - finite[-1][1] if finite else None
    summary["mean_ms"] = round(histogram["sum"] / count * 1000, 2) if count else None
    for q in PERCENTILES:
        value = histogram_quantile(q / 100, histogram["buckets"])
        summary[f"p{q:g}_ms"] = round(value * 1000, 2) if value is not None else None
    return summary
