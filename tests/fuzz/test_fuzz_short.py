"""A short, fixed-seed run of each atheris harness, in a subprocess on a copy of the committed
corpus (libFuzzer adds new inputs to its corpus folder; the committed one stays as it is).

A harness exits 0 after ``-runs`` inputs when nothing but the allowed exceptions came out;
any other exception ends it with a non-zero status and the input saved as ``crash-*``. The
control runs the same harness machinery on an input that raises, so a harness that could never
fail does not pass unnoticed. Longer runs and their figures: tests/fuzz/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = 3000
#: the edge adapters' harnesses: fewer inputs each (seven of them, < 1 minute together on the
#: shared 2-core machine); their long runs are in tests/fuzz/README.md
EDGE_RUNS = 10_000
TIMEOUT_S = 300


def runs_done(stderr: str) -> int:
    """The inputs a run tried, from libFuzzer's ``Done N runs`` line (it checks ``-runs`` only
    between mutation rounds, so N may be a little above what was asked)."""
    found = re.search(r"^Done (\d+) runs", stderr, re.MULTILINE)
    return int(found.group(1)) if found else 0


def run_harness(
    harness: str, corpus: str, tmp_path: Path, *extra: str, runs: int = RUNS
) -> subprocess.CompletedProcess[str]:
    work = tmp_path / corpus
    shutil.copytree(HERE / "corpus" / corpus, work)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(HERE / harness), str(work), f"-runs={runs}", "-seed=1", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize(
    ("harness", "corpus"),
    [
        pytest.param("fuzz_codec.py", "codec", id="Codec.decode with validation"),
        pytest.param("fuzz_loaders.py", "loaders", id="CSV and rules JSON loaders"),
    ],
)
def test_short_fuzz_run_finds_nothing(harness: str, corpus: str, tmp_path: Path) -> None:
    result = run_harness(harness, corpus, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert runs_done(result.stderr) >= RUNS
    assert not list(tmp_path.glob("crash-*"))


@pytest.mark.parametrize(
    "family", ["hikvision", "dahua", "zkteco", "plate", "qr", "generic", "mqtt"]
)
def test_short_fuzz_run_of_each_edge_adapter_finds_nothing(family: str, tmp_path: Path) -> None:
    """One harness per device family (``fuzz_edge_<family>.py``): only ``MalformedRequest``
    out of ``parse``, and every parsed request answers in the family's own format."""
    result = run_harness(f"fuzz_edge_{family}.py", f"edge_{family}", tmp_path, runs=EDGE_RUNS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert runs_done(result.stderr) >= EDGE_RUNS
    assert not list(tmp_path.glob("crash-*"))


def test_control_a_harness_reports_an_exception_it_does_not_allow(tmp_path: Path) -> None:
    """The codec harness on a corpus entry made to raise KeyError (an unknown record name is
    a caller bug, not bad input): the run fails and saves the input."""
    harness = tmp_path / "fuzz_broken.py"
    harness.write_text(
        (HERE / "fuzz_codec.py")
        .read_text(encoding="utf-8")
        .replace("CODEC.decode(name,", "CODEC.decode(name + '?',"),
        encoding="utf-8",
    )
    work = tmp_path / "codec"
    shutil.copytree(HERE / "corpus" / "codec", work)
    result = subprocess.run(
        [sys.executable, str(harness), str(work), "-runs=10", "-seed=1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "KeyError" in result.stdout + result.stderr
    assert list(tmp_path.glob("crash-*"))


def test_control_an_edge_harness_reports_a_broken_answer(tmp_path: Path) -> None:
    """The QR harness with the allowance for refusals in a 200 body taken away: the shared edge
    checks (``edge_checks.exercise``) fail on the first input and the run saves it."""
    harness = tmp_path / "fuzz_edge_broken.py"
    harness.write_text(
        (HERE / "fuzz_edge_qr.py")
        .read_text(encoding="utf-8")
        .replace("refuses_in_body=True", "refuses_in_body=False"),
        encoding="utf-8",
    )
    shutil.copy(HERE / "edge_checks.py", tmp_path / "edge_checks.py")
    work = tmp_path / "edge_qr"
    shutil.copytree(HERE / "corpus" / "edge_qr", work)
    result = subprocess.run(
        [sys.executable, str(harness), str(work), "-runs=10", "-seed=1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "AssertionError" in result.stdout + result.stderr
    assert list(tmp_path.glob("crash-*"))
