"""The bench worker's collector setups and the probe that times collections."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fangxian.core.gctune import FREEZE_TUNED, MODES, TUNED_THRESHOLDS, GcProbe


@pytest.mark.parametrize(
    ("mode", "frozen", "thresholds"),
    [
        pytest.param("default", False, None, id="default leaves the collector alone"),
        pytest.param("freeze", True, None, id="freeze moves the live objects out of reach"),
        pytest.param(FREEZE_TUNED, True, list(TUNED_THRESHOLDS), id="freeze and thresholds"),
    ],
)
def test_apply_mode(mode: str, frozen: bool, thresholds: list[int] | None) -> None:
    # in a child process: freezing and thresholds are process-wide
    code = (
        "import gc, json; from fangxian.core.gctune import apply_mode; "
        f"before = list(gc.get_threshold()); setup = apply_mode({mode!r}); "
        "print(json.dumps({'setup': setup, 'before': before}))"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    out = json.loads(done.stdout)
    setup = out["setup"]
    assert setup["mode"] == mode
    assert (setup["frozen_objects"] > 1000) is frozen
    assert setup["tracked_objects"] > 1000
    assert setup["thresholds"] == (thresholds or out["before"])


def test_unknown_mode_is_refused() -> None:
    from fangxian.core.gctune import apply_mode

    with pytest.raises(ValueError, match="unknown gc mode"):
        apply_mode("off")


def test_probe_times_every_collection_by_generation() -> None:
    probe = GcProbe().install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        probe.remove()
    report = probe.report()
    assert report["gen0"]["collections"] >= 1
    assert report["gen2"]["collections"] >= 2
    assert report["gen2"]["max_ms"] <= report["gen2"]["total_ms"]
    assert 0 <= report["gen2"]["cpu_max_ms"] <= report["gen2"]["cpu_total_ms"]
    probe.reset()
    assert probe.report()["gen2"]["collections"] == 0
    assert probe not in gc.callbacks


def test_modes_are_the_command_line_choices() -> None:
    assert MODES == ("default", "freeze", "freeze-tuned")
