"""The staff-facing Chinese names of the contract's enum symbols — one set, used by the alert
messages (``streams/rules/alerts.py``), the on-duty log line (``streams/notify.py``), the demo
console and the daily report (``sinks/reports/``). Every symbol of the enum has a label
(``tests/unit/test_schemas_labels.py``); English is the symbol itself, lower-cased."""

from __future__ import annotations

from typing import Final

DECISION_ZH: Final[dict[str, str]] = {
    "ALLOW": "放行",
    "WARN": "放行并提醒",
    "RECHECK": "暂停通行并复测",
    "DENY": "禁止通行",
}
SEVERITY_ZH: Final[dict[str, str]] = {"INFO": "提示", "WARNING": "警告", "CRITICAL": "紧急"}
SYMPTOM_ZH: Final[dict[str, str]] = {
    "FEVER": "发热",
    "DRY_COUGH": "干咳",
    "FATIGUE": "乏力",
    "SORE_THROAT": "咽痛",
    "SHORTNESS_OF_BREATH": "呼吸困难",
    "DIARRHEA": "腹泻",
    "LOSS_OF_TASTE_OR_SMELL": "嗅觉或味觉减退",
    "MUSCLE_ACHE": "肌肉酸痛",
    "OTHER": "其他",
}
