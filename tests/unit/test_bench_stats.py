"""Pure figures of the benchmark: percentiles, latency summaries, rates, ratios, pacing."""

from __future__ import annotations

import pytest

from fangxian.bench.loadgen import due_count
from fangxian.bench.stats import (
    histogram_delta,
    histogram_quantile,
    histogram_summary,
    latency_summary,
    percentile,
    rate,
    ratio,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([5.0], 99, 5.0, id="one value is every percentile"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 0, 1.0, id="p0 is the minimum"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 100, 4.0, id="p100 is the maximum"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 50, 2.5, id="p50 of an even count interpolates"),
        pytest.param([4.0, 1.0, 3.0, 2.0], 50, 2.5, id="order of the input does not matter"),
        pytest.param(list(map(float, range(1, 101))), 95, 95.05, id="p95 of 1..100 (numpy linear)"),
        pytest.param(list(map(float, range(1, 101))), 99, 99.01, id="p99 of 1..100 (numpy linear)"),
    ],
)
def test_percentile_interpolates_between_closest_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "q"),
    [
        pytest.param([], 50, id="no values"),
        pytest.param([1.0], -1, id="below 0"),
        pytest.param([1.0], 100.5, id="above 100"),
    ],
)
def test_percentile_refuses_what_has_no_answer(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        pytest.param(
            [],
            {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None},
            id="nothing measured gives None for every figure",
        ),
        pytest.param(
            [10.0, 30.0, 20.0],
            {"p50_ms": 20.0, "p95_ms": 29.0, "p99_ms": 29.8, "max_ms": 30.0},
            id="three latencies",
        ),
    ],
)
def test_latency_summary_has_p50_p95_p99_and_max(
    latencies: list[float], expected: dict[str, float | None]
) -> None:
    assert latency_summary(latencies) == expected


@pytest.mark.parametrize(
    ("count", "seconds", "expected"),
    [
        pytest.param(20_000, 4.0, 5000.0, id="events over seconds"),
        pytest.param(10, 0.0, 0.0, id="an empty interval has no rate"),
        pytest.param(10, 3.0, 3.0, id="rounded to whole events per second"),
    ],
)
def test_rate(count: int, seconds: float, expected: float) -> None:
    assert rate(count, seconds) == expected


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        pytest.param(6000.0, 60000.0, 0.1, id="pipeline over ceiling"),
        pytest.param(None, 60000.0, None, id="a missing pipeline figure"),
        pytest.param(6000.0, 0.0, None, id="a zero ceiling"),
        pytest.param(2.0, 3.0, 0.667, id="three places"),
    ],
)
def test_ratio(numerator: float | None, denominator: float | None, expected: float | None) -> None:
    assert ratio(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("elapsed", "per_s", "expected"),
    [
        pytest.param(0.0, 5000.0, 0, id="nothing due at the start"),
        pytest.param(-0.1, 5000.0, 0, id="nothing due before the start"),
        pytest.param(0.5, 5000.0, 2500, id="half a second at 5k/s"),
        pytest.param(0.0013, 1000.0, 1, id="whole messages only"),
    ],
)
def test_due_count_paces_the_producer(elapsed: float, per_s: float, expected: int) -> None:
    assert due_count(elapsed, per_s) == expected


INF = float("inf")


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        pytest.param(0.5, [[0.01, 0], [0.1, 10], [INF, 10]], 0.055, id="linear within a bucket"),
        pytest.param(0.5, [[0.01, 10], [0.1, 10], [INF, 10]], 0.005, id="first bucket starts at 0"),
        pytest.param(0.99, [[0.01, 5], [0.1, 5], [INF, 10]], 0.1, id="+Inf gives the top bound"),
        pytest.param(0.5, [[0.01, 0], [INF, 0]], None, id="no observations"),
        pytest.param(1.0, [[0.01, 3], [0.1, 4], [INF, 4]], 0.1, id="p100 is the top bucket"),
    ],
)
def test_histogram_quantile_as_prometheus(
    q: float, buckets: list[list[float]], expected: float | None
) -> None:
    got = histogram_quantile(q, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_histogram_delta_and_summary() -> None:
    before = {"buckets": [[0.01, 2], [0.1, 3], [INF, 3]], "count": 3, "sum": 0.05}
    after = {"buckets": [[0.01, 2], [0.1, 13], [INF, 13]], "count": 13, "sum": 0.55}
    delta = histogram_delta(after, before)
    assert delta == {"buckets": [[0.01, 0], [0.1, 10], [INF, 10]], "count": 10, "sum": 0.5}
    summary = histogram_summary(delta)
    assert summary["batches"] == 10
    assert summary["mean_ms"] == pytest.approx(50.0)
    assert summary["p50_ms"] == pytest.approx(55.0)
    assert summary["above_top_bucket"] == 0
    saturated = {"buckets": [[0.01, 0], [0.1, 1], [INF, 4]], "count": 4, "sum": 9.0}
    assert histogram_summary(saturated)["above_top_bucket"] == 3
    assert histogram_summary(saturated)["p99_ms"] == pytest.approx(100.0)
    assert histogram_summary({"buckets": [[INF, 0]], "count": 0, "sum": 0.0})["p99_ms"] is None
