"""Long CLI work shows progress when its output is a pipe (CI, a log): plain periodic lines with
counts, rate and ETA on stderr, then a final line; stdout keeps only the command's result."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_run import ROOT, run_cli

EXAMPLE = ROOT / "docs" / "examples" / "residents-example.csv"
COPIES = 3000  # the example's rows again and again: read and validated (then duplicates)


@pytest.fixture(scope="module")
def big_register(tmp_path_factory: pytest.TempPathFactory) -> Path:
    header, *rows = EXAMPLE.read_text(encoding="utf-8-sig").splitlines()
    path = tmp_path_factory.mktemp("register") / "residents-big.csv"
    path.write_text("\n".join([header, *rows * COPIES]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("interval", "periodic_lines"),
    [
        pytest.param("0.02", True, id="short interval: periodic lines, then the final one"),
        pytest.param("3600", False, id="control, long interval: only the final line"),
    ],
)
def test_load_prints_progress_lines_to_a_pipe(
    big_register: Path, interval: str, periodic_lines: bool
) -> None:
    env = {"FANGXIAN_PSEUDONYM_KEY": "test-only-key-0123456789"}
    env["FANGXIAN_PROGRESS_INTERVAL_S"] = interval
    done = run_cli(["load", "--dry-run", "residents", str(big_register)], env)
    assert done.returncode == 1, done.stderr  # duplicates and the example's bad rows
    progress = [line for line in done.stderr.splitlines() if line.startswith("读取校验 read")]
    final = [line for line in progress if "完成 done" in line]
    rows = len(EXAMPLE.read_text(encoding="utf-8-sig").splitlines()[1:]) * COPIES
    assert len(final) == 1 and f"{rows:,} rows" in final[0]
    assert "validated" in final[0] and "rejected" in final[0]
    periodic = [line for line in progress if line not in final]
    assert bool(periodic) == periodic_lines, done.stderr
    for line in periodic:
        assert re.search(r"[\d,]+ / [\d,]+ rows \(\d+%\) · [\d,]+ rows/s", line), line
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr  # no bar drawing in a log
    assert "检查通过 checked" in done.stdout and "读取校验" not in done.stdout
