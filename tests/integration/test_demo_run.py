"""The README's run command: the embedded stack (Tansu + worker + chdb + scripted day + the
staff console) opens with the console's URL, shows a compact status line of counts instead of
a line per alert, and stops cleanly with a summary that has every alert type."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from fangxian.core.privacy import Pseudonymiser
from fangxian.demo import DEMO_KEY
from fangxian.demo_edge import FAMILY_ZH, EdgeCompound
from fangxian.sim.model import NOT_SIMULATED
from schemas.contract import ALERT_TYPES

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_URL = re.compile(r"值班台 staff console: (http://127\.0\.0\.1:\d+)/login")
EDGE_FAMILY = re.compile(
    r"^  (\w+) +应答 answered=(\d+) 核心判定 core=(\d+) 兜底 fallback=(\d+)", re.MULTILINE
)


def test_fangxian_run_shows_every_alert_type_and_stops_cleanly(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "fangxian.cli", "run", "--duration", "90"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None and demo.stderr is not None
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.append(demo.stderr.read()), daemon=True)
    drain.start()
    lines: list[str] = []
    health: dict[str, int] = {}
    try:
        for line in demo.stdout:
            lines.append(line)
            found = CONSOLE_URL.search(line)
            if found:  # the console answers while the demo runs
                with urllib.request.urlopen(f"{found[1]}/healthz", timeout=10) as answer:
                    health = json.loads(answer.read())
        assert demo.wait(timeout=240) == 0, "".join(errors)[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
    drain.join(timeout=30)
    out = "".join(lines)
    assert health.get("ok") is True and health["staff"] >= 2, health
    assert "==== 汇总 Summary ====" in out
    assert "未出现 not seen" not in out, out[-2000:]
    head, summary = out.split("==== 汇总 Summary ====")
    for alert_type in ALERT_TYPES:
        if alert_type not in NOT_SIMULATED:
            assert f"  {alert_type} " in summary, alert_type
    # alerts were shown as they happened, as counts by type on the status line, not a flood
    status = [line for line in head.splitlines() if line.startswith("— 事件 events=")]
    totals = [int(re.search(r"告警 alerts=(\d+)", line)[1]) for line in status]  # type: ignore[index]
    assert len(totals) >= 3 and totals[0] < totals[-1], status
    assert "紧急 CRITICAL=" in status[-1], status[-1]
    assert any(f"{t}=" in status[-1] for t in ALERT_TYPES), status[-1]
    assert "🔔" not in head
    assert len(head.splitlines()) < 60, len(head.splitlines())
    # the on-duty dispatcher delivered to the local robot, and the link acknowledged one
    assert "📨 企业微信群 WeCom ← @guard" in out, out[-2000:]
    assert "✔ 门岗点击确认链接 guard opened the acknowledge link: HTTP 200" in out
    counts = summary.split("ClickHouse (chdb) rows 行数: ")[1].strip()
    rows = dict(part.split("=") for part in counts.split(", "))
    assert int(rows["gate_scans"]) == int(rows["gate_decisions"]) > 0
    assert int(rows["dead_letters"]) > 0  # the odd malformed message was dead-lettered
    # the gate edge: a Hikvision terminal (remote verification), a plate camera and a QR reader
    # were answered in their own formats, with the core's decisions (docs/edge.md)
    assert "边缘网关 gate edge: http://127.0.0.1:" in head, head
    answers = [line for line in head.splitlines() if line.startswith("🚪 ")]
    for family, label in FAMILY_ZH.items():
        shown = [line for line in answers if line.startswith(f"🚪 {label}:")]
        assert any("核心判定 core decision" in line for line in shown), (family, head)
    # a fever refused at the terminal, a red code at the turnstile, a stranger's car at the
    # barrier — each with the core's reason when the core answered it
    for refused, reason in (
        ("remoteCheck failed", "FEVER_RECHECK"),
        ("code=0001", "HEALTH_CODE_RED"),
        ("info=no", "VEHICLE_UNREGISTERED"),
    ):
        line = next((a for a in answers if refused in a), "")
        assert line, (refused, answers)
        assert reason in line or "核心判定 core decision" not in line, line
    assert "边缘 edge answered=" in status[-1], status[-1]
    families = {m[1]: (int(m[2]), int(m[3])) for m in EDGE_FAMILY.finditer(summary)}
    assert set(families) == set(FAMILY_ZH), summary
    for family, (answered, core) in families.items():
        assert answered >= 3 and core >= 3, (family, answered, core)
    decided = int(re.search(r"core decisions on edge events: (\d+)", summary)[1])  # type: ignore[index]
    assert decided >= sum(answered for answered, _ in families.values()) > 0, summary
    # what the devices sent raw (plates; the ID numbers behind the tokens) shows only masked
    compound = EdgeCompound.build(Pseudonymiser.from_text(DEMO_KEY), 0, seed=7)
    everything = out + "".join(errors)
    for raw in (*compound.plates, *compound.strangers, *compound.residents, compound.red_code):
        assert raw not in everything
