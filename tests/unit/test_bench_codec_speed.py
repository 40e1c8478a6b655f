"""The codec speed bench runs, and its baseline codec (loaded from git) decodes as the current."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from fangxian.bench.codec_speed import REPO_ROOT, baseline_codec, compare, simulated_mix
from schemas import Codec


def _in_git() -> bool:
    if shutil.which("git") is None:
        return False
    probe = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_compare_times_every_codec_on_every_measure() -> None:
    mix = simulated_mix(events=2000)
    assert {name for name, _ in mix.payloads} == {"GateScan", "TemperatureReading", "HealthReport"}
    assert {name for name, _ in mix.outputs} >= {"GateDecision"}
    results = compare(mix, {"a": Codec(), "b": Codec()}, rounds=2)
    for label in ("a", "b"):
        for kind in ("decode_validate", "decode_no_validate", "encode"):
            figures = results[label][kind]
            assert 0 < figures["median"] <= figures["best"]


@pytest.mark.skipif(not _in_git(), reason="needs the git history")
def test_baseline_codec_from_git_decodes_like_the_current_one() -> None:
    old, new = baseline_codec("HEAD"), Codec()
    assert type(old).__module__ != type(new).__module__
    for name, payload in simulated_mix(events=100).payloads:
        assert old.decode(name, payload) == new.decode(name, payload)
