"""A short, fixed-seed run of each atheris harness, in a subprocess on a copy of the committed
corpus (libFuzzer adds new inputs to its corpus folder; the committed one stays as it is).

A harness exits 0 after ``-runs`` inputs when nothing but the allowed exceptions came out;
any other exception ends it with a non-zero status and the input saved as ``crash-*``. The
control runs the same harness machinery on an input that raises, so a harness that could never
fail does not pass unnoticed. Longer runs and their figures: tests/fuzz/README.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = 3000
TIMEOUT_S = 300


def run_harness(
    harness: str, corpus: str, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    work = tmp_path / corpus
    shutil.copytree(HERE / "corpus" / corpus, work)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(HERE / harness), str(work), f"-runs={RUNS}", "-seed=1", *extra],
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
    assert f"Done {RUNS} runs" in result.stderr
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
