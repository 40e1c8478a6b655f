"""How an alert reaches the on-duty person: one line, Chinese first, English beside it.
Pure formatting; the sink process's on-duty log relay (``fangxian/worker.py``) and the demo
console print it."""

from __future__ import annotations

from typing import Any

from schemas.labels import SEVERITY_ZH


def should_notify(alert: dict[str, Any]) -> bool:
    """Records kept for the file (e.g. a fever cleared on recheck) are not staff alerts."""
    return bool(alert.get("details", {}).get("notify", "true") != "false")


def alert_line(alert: dict[str, Any]) -> str:
    sev = alert["severity"]
    return (
        f"[{SEVERITY_ZH.get(sev, sev)} {sev}] {alert['alert_type']}: "
        f"{alert['message_zh']} | {alert['message_en']}"
    )
