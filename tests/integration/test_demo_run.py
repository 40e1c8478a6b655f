"""The README's run command: the embedded stack (Tansu + worker + chdb + scripted day) shows
events, decisions and every alert type, then stops cleanly with a summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fangxian.sim.model import NOT_SIMULATED
from schemas.contract import ALERT_TYPES

ROOT = Path(__file__).resolve().parents[2]


def test_fangxian_run_shows_every_alert_type_and_stops_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fangxian.cli", "run", "--duration", "90"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "==== 汇总 Summary ====" in out
    assert "未出现 not seen" not in out, out[-2000:]
    summary = out.split("==== 汇总 Summary ====")[1]
    for alert_type in ALERT_TYPES:
        if alert_type not in NOT_SIMULATED:
            assert f"  {alert_type} " in summary, alert_type
    assert "🔔 [" in out  # alerts were shown as they happened
    # the on-duty dispatcher delivered to the local robot, and the link acknowledged one
    assert "📨 企业微信群 WeCom ← @guard" in out, out[-2000:]
    assert "✔ 门岗点击确认链接 guard opened the acknowledge link: HTTP 200" in out
    counts = summary.split("ClickHouse (chdb) rows 行数: ")[1].strip()
    rows = dict(part.split("=") for part in counts.split(", "))
    assert int(rows["gate_scans"]) == int(rows["gate_decisions"]) > 0
    assert int(rows["dead_letters"]) > 0  # the odd malformed message was dead-lettered
