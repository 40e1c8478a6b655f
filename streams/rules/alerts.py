"""Alert records: deterministic ids, masking, zh/en messages, suppression.

An ``Alert`` dict has the fields of the contract's ``Alert`` record. Its ``alert_id`` is a uuid5
over the alert type and its cause (source event ids, or subject + window start for timer alerts),
so replaying the same input yields the same ids and the sinks can de-duplicate.

Messages are written for the person on duty: who (masked), where, what to do. Subject tokens are
masked (``fangxian.core.privacy.mask_token``) in anything a person reads; the ``subject_id``
field keeps the pseudonymous token so records can be joined.
"""

from __future__ import annotations

import uuid
from bisect import insort
from collections.abc import Iterable, Mapping
from typing import Any

from fangxian.core.privacy import mask_token as mask
from schemas.labels import DECISION_ZH, SYMPTOM_ZH
from streams.state.store import KeyedStore

# Alert types (enum AlertType in the contract).
FEVER_RECHECK = "FEVER_RECHECK"
FEVER_CONFIRMED = "FEVER_CONFIRMED"
FEVER_CLEARED = "FEVER_CLEARED"
FEVER_RECHECK_MISSED = "FEVER_RECHECK_MISSED"
TEMPERATURE_IMPLAUSIBLE = "TEMPERATURE_IMPLAUSIBLE"
DEVICE_SILENT = "DEVICE_SILENT"
DEVICE_DRIFT = "DEVICE_DRIFT"
HEALTH_CODE_RED = "HEALTH_CODE_RED"
HEALTH_CODE_YELLOW = "HEALTH_CODE_YELLOW"
QUARANTINE_BREACH = "QUARANTINE_BREACH"
UNKNOWN_SUBJECT = "UNKNOWN_SUBJECT"
PASS_INVALID = "PASS_INVALID"
VEHICLE_UNREGISTERED = "VEHICLE_UNREGISTERED"
FACE_CONSENT_MISSING = "FACE_CONSENT_MISSING"
CURFEW_VIOLATION = "CURFEW_VIOLATION"
ENTRY_LIMIT_EXCEEDED = "ENTRY_LIMIT_EXCEEDED"
SYMPTOMS_REPORTED = "SYMPTOMS_REPORTED"
FEVER_REPORTED = "FEVER_REPORTED"
REPORT_OVERDUE = "REPORT_OVERDUE"
OBSERVATION_COMPLETED = "OBSERVATION_COMPLETED"
DEVICE_CLOCK_SKEW = "DEVICE_CLOCK_SKEW"
OTHER = "OTHER"
# early warning over windows (streams/rules/early_warning.py)
CLUSTER_SUSPECTED = "CLUSTER_SUSPECTED"
OCCUPANCY_OVER_CAPACITY = "OCCUPANCY_OVER_CAPACITY"
GATE_ANOMALY = "GATE_ANOMALY"
# the household on a scan disagrees with the register (issue 20, behaviour 3)
HOUSEHOLD_MISMATCH = "HOUSEHOLD_MISMATCH"

INFO = "INFO"
WARNING = "WARNING"
CRITICAL = "CRITICAL"

# Fixed namespace: changing it changes every alert id.
ALERT_NAMESPACE = uuid.UUID("6b1f3c52-3d0e-5a43-9a51-0f6e2c8d7a10")
REDACTED = ""


def alert_id(alert_type: str, cause: str) -> str:
    """Deterministic id of an alert: uuid5 over its type and cause."""
    return str(uuid.uuid5(ALERT_NAMESPACE, alert_type + "|" + cause))


_ZH_LABELS: dict[str, str] = {
    **DECISION_ZH,
    **SYMPTOM_ZH,
    "HOME_OBSERVATION": "居家观察",
    "CENTRALIZED_ISOLATION": "集中隔离",
    "HOSPITALIZED": "住院",
    "OUT": "外出",
    "IN": "进入",
    "PERSON": "个人",
    "HOUSEHOLD": "家庭",
    "RESIDENT": "居民",
    "STAFF": "工作人员",
    "VISITOR": "访客",
    "VEHICLE": "车辆",
    "UNKNOWN": "未知对象",
    "unknown_pass": "不存在",
    "revoked": "已撤销",
    "not_yet_valid": "尚未生效",
    "expired": "已过期",
    "wrong_community": "不属于本小区",
    "entries_used_up": "入场次数已用完",
    "not_registered": "未登记",
    "BUILDING": "楼栋",
    "COMMUNITY": "社区",
    "OVER": "超限",
    "CLEARED": "恢复",
    "LIMIT_ENTRY": "请在入口限流，暂停放行进入直至人数回落。",
    "ENTRY_RESUMED": "已回落至容量以内，可恢复正常放行。",
}
_EN_LABELS: dict[str, str] = {
    "ALLOW": "allow",
    "WARN": "allow with a warning",
    "RECHECK": "hold and recheck",
    "DENY": "deny",
    "HOME_OBSERVATION": "home observation",
    "CENTRALIZED_ISOLATION": "centralized isolation",
    "HOSPITALIZED": "hospital care",
    "OUT": "go out",
    "IN": "come in",
    "PERSON": "person",
    "HOUSEHOLD": "household",
    "unknown_pass": "does not exist",
    "revoked": "is revoked",
    "not_yet_valid": "is not valid yet",
    "expired": "has expired",
    "wrong_community": "belongs to another community",
    "entries_used_up": "has no entries left",
    "not_registered": "is not registered",
    "BUILDING": "building",
    "COMMUNITY": "community",
    "OVER": "over capacity",
    "CLEARED": "back within capacity",
    "LIMIT_ENTRY": "Limit entries at the gates until the count falls.",
    "ENTRY_RESUMED": "Entries may resume as normal.",
}

# (zh, en) per alert type; fields come from the alert context (see build_alert).
TEMPLATES: dict[str, tuple[str, str]] = {
    FEVER_RECHECK: (
        "【复测体温】门岗 {gate} 设备 {device} 测得 {temperature_c}°C，"
        "请在{recheck_min}分钟内复测。对象 {subject}",
        "[Recheck temperature] Gate {gate} device {device} read {temperature_c} °C; "
        "recheck within {recheck_min} min. Subject {subject}.",
    ),
    FEVER_CONFIRMED: (
        "【确认发热】门岗 {gate} 设备 {device} 复测 {temperature_c}°C"
        "（首次 {first_temperature_c}°C），请立即将对象 {subject} 引导至临时留观点并上报。",
        "[Fever confirmed] Gate {gate} device {device} recheck read {temperature_c} °C "
        "(first {first_temperature_c} °C). Take subject {subject} to the temporary observation "
        "point and report now.",
    ),
    FEVER_CLEARED: (
        "【复测正常】门岗 {gate} 对象 {subject} 复测 {temperature_c}°C，"
        "低于 {threshold_c}°C，已解除。",
        "[Recheck normal] Gate {gate} subject {subject} rechecked at {temperature_c} °C, below "
        "{threshold_c} °C; cleared.",
    ),
    FEVER_RECHECK_MISSED: (
        "【未复测】门岗 {gate} 设备 {device} 测得 {temperature_c}°C 的对象 {subject} "
        "在{recheck_min}分钟内未复测，请核查去向。",
        "[Recheck missed] Gate {gate} device {device}: subject {subject} read {temperature_c} °C "
        "and was not rechecked within {recheck_min} min; find and recheck them.",
    ),
    TEMPERATURE_IMPLAUSIBLE: (
        "【读数异常】门岗 {gate} 设备 {device} 读数 {temperature_c}°C 超出合理范围"
        "（{plausible_min_c}–{plausible_max_c}°C），请重新测量并检查设备。对象 {subject}",
        "[Implausible reading] Gate {gate} device {device} read {temperature_c} °C, outside "
        "{plausible_min_c}–{plausible_max_c} °C; measure again and check the device. "
        "Subject {subject}.",
    ),
    DEVICE_SILENT: (
        "【设备离线】门岗 {gate} 设备 {device} 已超过 {silent_min} 分钟无数据，请检查设备与网络。",
        "[Device silent] Gate {gate} device {device} has sent nothing for more than "
        "{silent_min} min; check the device and its network.",
    ),
    DEVICE_DRIFT: (
        "【设备偏差】门岗 {gate} 设备 {device} 近 {window_min} 分钟平均 {device_mean_c}°C，"
        "其他设备平均 {others_mean_c}°C，偏差 {delta_c}°C，请校准或更换设备。",
        "[Device drift] Gate {gate} device {device} averaged {device_mean_c} °C over the last "
        "{window_min} min against {others_mean_c} °C on the other devices ({delta_c} °C off); "
        "calibrate or replace it.",
    ),
    HEALTH_CODE_RED: (
        "【红码拦截】门岗 {gate} 对象 {subject} 出示红码，已禁止通行，请按规定处置并上报。",
        "[Red health code] Gate {gate} subject {subject} showed a red code and was denied; "
        "handle per protocol and report.",
    ),
    HEALTH_CODE_YELLOW: (
        "【黄码提示】门岗 {gate} 对象 {subject} 出示黄码，处理：{action_zh}，请核实行程。",
        "[Yellow health code] Gate {gate} subject {subject} showed a yellow code; action: "
        "{action_en}. Verify their travel history.",
    ),
    QUARANTINE_BREACH: (
        "【违反隔离】门岗 {gate} {status_zh}中的居民 {subject} 试图{direction_zh}，"
        "已拦截，请立即处置。",
        "[Quarantine breach] Gate {gate} resident {subject} under {status_en} tried to "
        "{direction_en} and was stopped; act now.",
    ),
    # refused coming in, let out with a warning going out (nobody is kept inside): the
    # message says which (``action``, ``direction``), never "denied" of someone let out
    UNKNOWN_SUBJECT: (
        "【身份不明】门岗 {gate} {subject_type_zh} {subject} 未登记（{direction_zh}），"
        "处理：{action_zh}，请人工核验并登记。",
        "[Unknown subject] Gate {gate} {subject_type} {subject} is not registered (to "
        "{direction_en}); action: {action_en}. Verify and register them in person.",
    ),
    PASS_INVALID: (
        "【通行证无效】门岗 {gate} 访客通行证 {subject} {why_zh}（{direction_zh}），"
        "处理：{action_zh}，请联系邀请居民。",
        "[Invalid pass] Gate {gate} visitor pass {subject} {why_en} (to {direction_en}); "
        "action: {action_en}. Contact the host resident.",
    ),
    VEHICLE_UNREGISTERED: (
        "【车辆未登记】门岗 {gate} 车辆 {subject} {why_zh}（{direction_zh}），"
        "处理：{action_zh}，请人工核验。",
        "[Vehicle not registered] Gate {gate} vehicle {subject} {why_en} (to {direction_en}); "
        "action: {action_en}. Verify in person.",
    ),
    FACE_CONSENT_MISSING: (
        "【未授权人脸】门岗 {gate} 设备 {device} 识别到未授权使用人脸信息的人员，"
        "已拒绝且未保存身份，请改用扫码或人工核验。",
        "[No face consent] Gate {gate} device {device} matched a face without consent; rejected "
        "and no identity kept. Use a QR code or check in person.",
    ),
    CURFEW_VIOLATION: (
        "【宵禁时段】门岗 {gate} 对象 {subject} 于 {local_time} 通行（宵禁 {curfew}），"
        "处理：{action_zh}。",
        "[Curfew] Gate {gate} subject {subject} passed at {local_time} (curfew {curfew}); "
        "action: {action_en}.",
    ),
    ENTRY_LIMIT_EXCEEDED: (
        "【超出出入次数】门岗 {gate} {scope_zh} {limit_key} 在 {window_h} 小时内已通行 {count} 次"
        "（上限 {limit} 次），处理：{action_zh}。对象 {subject}",
        "[Entry limit exceeded] Gate {gate} {scope_en} {limit_key} already passed {count} times "
        "in {window_h} h (limit {limit}); action: {action_en}. Subject {subject}.",
    ),
    HOUSEHOLD_MISMATCH: (
        "【家庭信息不符】门岗 {gate} 居民 {subject} 的通行码所载家庭 {scan_household} "
        "与登记家庭 {registered_household} 不一致，出入次数按登记家庭计算，"
        "请核实并重新发放通行码。",
        "[Household mismatch] Gate {gate}: resident {subject}'s code names household "
        "{scan_household}, the register {registered_household}; passes count for the registered "
        "household. Check the record and reissue the code.",
    ),
    SYMPTOMS_REPORTED: (
        "【症状上报】居民 {subject} 上报症状：{symptoms_zh}，请尽快电话联系并评估。",
        "[Symptoms reported] Resident {subject} reported: {symptoms}; call and assess them soon.",
    ),
    FEVER_REPORTED: (
        "【自报发热】居民 {subject} 自报体温 {temperature_c}°C（≥{threshold_c}°C），请上门复测。",
        "[Fever reported] Resident {subject} reported {temperature_c} °C "
        "(≥ {threshold_c} °C); visit and recheck.",
    ),
    REPORT_OVERDUE: (
        "【未按时上报】居家观察居民 {subject} 在 {date} {deadline} 前未提交健康报告，请电话联系。",
        "[Report overdue] Resident {subject} under home observation has not reported by "
        "{deadline} on {date}; call them.",
    ),
    OBSERVATION_COMPLETED: (
        "【观察期满】居民 {subject} 已完成 {observation_days} 天居家观察，每日均已上报且无症状，"
        "可办理解除观察证明。",
        "[Observation completed] Resident {subject} finished {observation_days} days of home "
        "observation with every day reported and no symptoms; the release certificate can be "
        "issued.",
    ),
    DEVICE_CLOCK_SKEW: (
        "【设备时钟超前】门岗 {gate} 设备 {device} 的事件时间比到达时间快 {ahead_s} 秒"
        "（允许 {max_skew_s} 秒），已按到达时间处理，请校准设备时钟与时区。",
        "[Device clock ahead] Gate {gate} device {device} stamps events {ahead_s} s ahead of "
        "their arrival (allowed {max_skew_s} s); processed at arrival time. Set the device's "
        "clock and time zone.",
    ),
    OTHER: ("【提示】{detail}", "[Notice] {detail}"),
    CLUSTER_SUSPECTED: (
        "【聚集性疫情预警】{scope_zh} {scope_key} 在 {window_h} 小时内已有 {cases} 人"
        "发热或有症状（预警线 {min_cases} 人）：{case_list}。请立即上报街道并开展流调。",
        "[Cluster suspected] {scope_en} {scope_key}: {cases} persons with a fever or symptoms "
        "within {window_h} h (threshold {min_cases}): {case_list}. Report to the street office "
        "and start contact tracing now.",
    ),
    OCCUPANCY_OVER_CAPACITY: (
        "【在场人数{status_zh}】在场 {inside} 人，容量 {capacity} 人。{advice_zh}",
        "[Occupancy {status_en}] {inside} persons inside, capacity {capacity}. {advice_en}",
    ),
    GATE_ANOMALY: (
        "【门岗拒绝异常】门岗 {gate} 近 {window_min} 分钟拒绝 {refusals} 次"
        "（此前 {baseline_h} 小时平均每 {window_min} 分钟 {baseline} 次，预警线 {threshold} 次），"
        "请检查读卡/扫码设备或现场人员聚集情况。",
        "[Gate anomaly] Gate {gate} refused {refusals} passes in the last {window_min} min "
        "(the previous {baseline_h} h averaged {baseline} per {window_min} min; threshold "
        "{threshold}). Check the reader and whether a crowd is at the gate.",
    ),
}


def label_zh(code: str) -> str:
    """The Chinese label of an enum symbol (the symbol itself if there is none)."""
    return _ZH_LABELS.get(code, code)


class _Context(dict[str, str]):
    def __missing__(self, key: str) -> str:
        if key.endswith("_zh"):
            base = self.get(key[:-3], "-")
            return _ZH_LABELS.get(base, base)
        if key.endswith("_en"):
            base = self.get(key[:-3], "-")
            return _EN_LABELS.get(base, base.lower())
        return "-"


def render(alert_type: str, context: Mapping[str, str]) -> tuple[str, str]:
    """(message_zh, message_en) for an alert; ``<field>_zh``/``<field>_en`` translate codes."""
    zh, en = TEMPLATES.get(alert_type, TEMPLATES[OTHER])
    ctx = _Context(context)
    return zh.format_map(ctx), en.format_map(ctx)


def build_alert(
    *,
    alert_type: str,
    severity: str,
    community_id: str,
    cause: str,
    source_event_ids: Iterable[str],
    event_time: int,
    created_at: int,
    gate_id: str | None = None,
    device_id: str | None = None,
    subject_id: str | None = None,
    details: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An ``Alert`` record. ``details`` must hold no raw personal data (it is shown as-is); the
    message context adds the masked subject and the gate/device."""
    detail_map = dict(details) if details else {}
    ctx = dict(detail_map)
    ctx["gate"] = gate_id or "-"
    ctx["device"] = device_id or "-"
    ctx["subject"] = mask(subject_id)
    message_zh, message_en = render(alert_type, ctx)
    return {
        "alert_id": alert_id(alert_type, cause),
        "alert_type": alert_type,
        "severity": severity,
        "community_id": community_id,
        "gate_id": gate_id,
        "device_id": device_id,
        "subject_id": subject_id or None,
        "source_event_ids": list(source_event_ids),
        "message_zh": message_zh,
        "message_en": message_en,
        "details": detail_map,
        "event_time": event_time,
        "created_at": created_at,
    }


class AlertSuppressor:
    """The same alert type for the same subject (or device) is not repeated within a window.

    Event time is cut into fixed buckets of the suppression window per (alert type, community,
    subject-or-device): the first alert of a bucket is admitted, the rest of the bucket is
    suppressed. The admitted set is therefore the same whatever order the events arrive in, and
    the alert's id is derived from the bucket (``bucket_cause``), so whichever event of a bucket
    arrives first, the alert has the same id. At most two alerts fall within one window (one at
    each side of a bucket boundary).

    The admitted buckets live in a ``KeyedStore`` (key ``community|type|key``, value the sorted
    admitted bucket numbers), so they are changelogged and restored with the partition.
    """

    __slots__ = ("store",)

    def __init__(self, store: KeyedStore[list[int]] | None = None) -> None:
        self.store: KeyedStore[list[int]] = KeyedStore("suppress") if store is None else store

    @staticmethod
    def bucket(t: int, window_ms: int) -> int:
        """Start (ms) of the suppression bucket holding ``t``."""
        return t - t % window_ms if window_ms > 0 else t

    def admit(self, alert_type: str, community_id: str, key: str, t: int, window_ms: int) -> bool:
        """True if the alert may be emitted (and is remembered); False if suppressed."""
        if window_ms <= 0:
            return True
        k = community_id + "|" + alert_type + "|" + key
        b = t - t % window_ms
        store = self.store
        admitted = store.get(k)
        if admitted is None:
            store[k] = [b]
            return True
        if b in admitted:
            return False
        insort(admitted, b)
        store.touch(k)
        return True

    def expire(self, horizon_ms: Mapping[str, int]) -> int:
        """Forget buckets that start before the community's horizon; returns how many."""
        dropped = 0
        store = self.store
        for k, admitted in store.items():
            horizon = horizon_ms.get(k.partition("|")[0], 0)
            if admitted[0] >= horizon:
                continue
            keep = [b for b in admitted if b >= horizon]
            dropped += len(admitted) - len(keep)
            if keep:
                store[k] = keep
            else:
                del store[k]
        return dropped

    def __len__(self) -> int:
        return len(self.store)


def bucket_cause(community_id: str, key: str, bucket: int) -> str:
    """The cause (for ``alert_id``) of a suppressible alert: its suppression bucket."""
    return f"{community_id}|{key}|{bucket}"
