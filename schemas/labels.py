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
ALERT_TYPE_ZH: Final[dict[str, str]] = {
    "FEVER_RECHECK": "体温异常待复测",
    "FEVER_CONFIRMED": "确认发热",
    "FEVER_CLEARED": "复测正常",
    "FEVER_RECHECK_MISSED": "未复测离开",
    "TEMPERATURE_IMPLAUSIBLE": "体温读数异常",
    "DEVICE_SILENT": "设备无数据",
    "DEVICE_DRIFT": "设备读数漂移",
    "DEVICE_CLOCK_SKEW": "设备时钟偏差",
    "EDGE_FALLBACK_DISAGREED": "边缘兜底判定与核心不一致",
    "HEALTH_CODE_RED": "红码",
    "HEALTH_CODE_YELLOW": "黄码",
    "QUARANTINE_BREACH": "隔离人员外出",
    "UNKNOWN_SUBJECT": "未登记人员",
    "PASS_INVALID": "通行证无效",
    "VEHICLE_UNREGISTERED": "未登记车辆",
    "FACE_CONSENT_MISSING": "未同意人脸识别",
    "CURFEW_VIOLATION": "宵禁时段通行",
    "ENTRY_LIMIT_EXCEEDED": "超出出入次数",
    "SYMPTOMS_REPORTED": "上报症状",
    "FEVER_REPORTED": "上报发热",
    "REPORT_OVERDUE": "健康上报逾期",
    "OBSERVATION_COMPLETED": "居家观察期满",
    "CLUSTER_SUSPECTED": "聚集性疫情预警",
    "OCCUPANCY_OVER_CAPACITY": "在场人数超限",
    "GATE_ANOMALY": "门岗拒绝异常",
    "HOUSEHOLD_MISMATCH": "家庭信息与登记不符",
    "OTHER": "其他",
}
