"""Device health: drift window and silence episodes."""

from __future__ import annotations

import itertools

import pytest

from streams.rules.device_health import CommunityDevices

MIN = 60_000


def _feed(devices: CommunityDevices, samples: dict[str, list[float]], t0: int = 0) -> None:
    t = t0
    for device, temps in samples.items():
        dev = devices.seen("c", device, "G-01", t)
        for temp in temps:
            t += 1000
            devices.add_sample(dev, t, temp, 34.0 <= temp <= 43.0, -1)


@pytest.mark.parametrize(
    ("samples", "drifting"),
    [
        pytest.param(
            {"D-01": [36.5] * 5, "D-02": [36.6] * 5, "D-03": [36.4] * 5, "D-04": [34.5] * 5},
            {"D-04"},
            id="drift flagged for device reading 2°C low",
        ),
        pytest.param(
            {"D-01": [36.5] * 5, "D-02": [36.6] * 5, "D-03": [33.0] * 5},
            {"D-03"},
            id="implausible cold readings count as drift evidence",
        ),
        pytest.param(
            {"D-01": [36.5] * 5, "D-02": [36.6] * 5, "D-03": [36.0] * 5},
            set(),
            id="half a degree is within the margin",
        ),
        pytest.param(
            {"D-01": [36.5] * 5, "D-02": [34.5] * 5, "D-03": [36.6] * 5},
            {"D-02"},
            id="healthy neighbours of a drifting device are not flagged",
        ),
        pytest.param(
            {"D-01": [36.5] * 5, "D-02": [34.5] * 5},
            set(),
            id="one other device is not enough to judge",
        ),
        pytest.param(
            {"D-01": [36.5] * 5, "D-02": [36.6] * 5, "D-03": [34.5] * 4},
            set(),
            id="four readings are not enough evidence",
        ),
    ],
)
def test_drift(samples: dict[str, list[float]], drifting: set[str]) -> None:
    devices = CommunityDevices()
    _feed(devices, samples)
    flagged = {d for d, dev in devices.devices.items() if devices.drift(dev, 0.8) is not None}
    assert flagged == drifting


def test_drift_window_forgets_old_samples() -> None:
    devices = CommunityDevices()
    _feed(devices, {"D-01": [36.5] * 5, "D-02": [36.6] * 5, "D-03": [34.5] * 5})
    devices.expire(10**9)
    assert devices.ok_n == 0 and devices.ok_devices == 0
    assert all(dev.all_n == 0 and dev.all_sum == 0.0 for dev in devices.devices.values())


def test_silent_device_alerted_once_per_episode() -> None:
    devices = CommunityDevices()
    devices.seen("c", "D-01", "G-01", -MIN).watched = True
    devices.seen("c", "D-01", "G-01", 0)
    assert devices.newly_silent(10 * MIN, 10 * MIN) == []
    assert [d.device_id for d, _ in devices.newly_silent(10 * MIN + 1, 10 * MIN)] == ["D-01"]
    assert devices.newly_silent(20 * MIN, 10 * MIN) == []
    devices.seen("c", "D-01", "G-01", 21 * MIN)
    assert [d.device_id for d, _ in devices.newly_silent(32 * MIN, 10 * MIN)] == ["D-01"]


def test_silence_of_an_on_demand_handheld_is_not_an_alert() -> None:
    devices = CommunityDevices()
    devices.seen("c", "H-01", "G-01", 0)  # not watched: a handheld used for rechecks
    assert devices.newly_silent(60 * MIN, 10 * MIN) == []


def test_a_one_off_device_id_is_never_reported_silent() -> None:
    devices = CommunityDevices()
    devices.seen("c", "D-typo", "G-01", 0).watched = True  # sent once, never again
    assert devices.newly_silent(60 * MIN, 10 * MIN) == []


def _gaps(times: list[int], silent_ms: int) -> list[int]:
    """The reference: starts of gaps longer than ``silent_ms`` in the full, sorted list."""
    ts = sorted(set(times))
    return [a for a, b in itertools.pairwise(ts) if b - a > silent_ms]


@pytest.mark.parametrize(
    ("times", "silent_ms"),
    [
        pytest.param([i * 10 for i in range(50_000)], 1000, id="a busy gate: 100 events/s"),
        pytest.param(
            [*range(0, 30_000, 7), *range(100_000, 130_000, 3)], 1000, id="one gap of 70 s"
        ),
        pytest.param(
            [*range(0, 20_000, 400), 50_000, *range(50_500, 60_000, 300), 500_000],
            10_000,
            id="sparse and dense",
        ),
        pytest.param(
            [i * 997 % 120_000 for i in range(3_000)], 1000, id="out of order (a permutation)"
        ),
        pytest.param(
            [*range(0, 10_000, 500), *range(40_000, 40_600, 100), 12_000, 39_000],
            1000,
            id="late events split a gap",
        ),
    ],
)
def test_event_times_are_compacted_without_changing_any_silence(
    times: list[int], silent_ms: int
) -> None:
    """Issue 19: a device's event times grew with every event (a 1.6 MB changelog value at a
    busy gate). Times that cannot bound a silence are dropped: at most about two per second
    kept, and the silences (gap starts) are those of the full list for any silence of 1 s or
    more (``device_silent_s`` is a positive number of seconds)."""
    devices = CommunityDevices(prefix="c|")
    dev = devices.seen("c", "D-01", "G-01", times[0])
    dev.watched = True
    for t in times[1:]:
        devices.seen("c", "D-01", "G-01", t)
    span_s = (max(times) - min(times)) / 1000
    assert len(dev.times) <= 2 * span_s + 2 * len(_gaps(times, 1000)) + 3
    for silent in (silent_ms, silent_ms * 3):
        assert _gaps(dev.times, silent) == _gaps(times, silent), silent
