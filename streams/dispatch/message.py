"""The text a person reads: Chinese first, English beside it; personal data already masked by
the decide stage (``message_zh``/``message_en``). Channels add their own mention syntax and cut
to their size limit (``sinks.channels``); the acknowledge links always survive the cut."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sinks.channels.base import AckLink, OutgoingMessage, Recipient
from streams.dispatch.acklink import AckClaim, AckSigner
from streams.dispatch.machine import AlertState, Delivery
from streams.dispatch.roster import Staff

SEVERITY_ZH = {"CRITICAL": "紧急", "WARNING": "警告", "INFO": "提示"}


def recipient(person: Staff) -> Recipient:
    c = person.contacts
    return Recipient(
        staff_id=person.staff_id,
        display_name=person.display_name,
        wecom_userid=c.wecom_userid,
        wecom_mobile=c.wecom_mobile,
        dingtalk_mobile=c.dingtalk_mobile,
        feishu_open_id=c.feishu_open_id,
        phone=c.phone,
    )


def compose(
    state: AlertState,
    delivery: Delivery,
    signer: AckSigner,
    *,
    now_ms: int,
    ttl_s: int,
    timezone: str,
) -> OutgoingMessage:
    sev = state.severity
    where = f" · {state.gate_id}" if state.gate_id else ""
    count = f" ×{delivery.group_count}" if delivery.group_count > 1 else ""
    headline = f"【{SEVERITY_ZH.get(sev, sev)} {sev}】{state.alert_type}{where}{count}"
    local = dt.datetime.fromtimestamp(state.event_time / 1000, ZoneInfo(timezone))
    lines = [
        state.message_zh,
        state.message_en,
        f"事件时间 event time: {local:%Y-%m-%d %H:%M} ({timezone})",
    ]
    if delivery.group_count > 1:
        lines.append(
            f"同一门岗同类预警共 {delivery.group_count} 条 {delivery.group_count} alerts of "
            "this type at this gate"
        )
    if delivery.escalation:
        lines.append(
            f"未确认，升级至第 {delivery.level} 级 not acknowledged: paging level {delivery.level}"
        )
    if not delivery.recipients:
        lines.append("当前无人值班，请任一工作人员处置 nobody is on duty: anyone, please respond")
    expires = now_ms + ttl_s * 1000
    people = tuple(recipient(p) for p in delivery.recipients)
    links = tuple(
        AckLink(
            recipient(person),
            signer.link(AckClaim(state.alert_id, person.staff_id, expires, state.partition)),
        )
        for person in delivery.recipients
    )
    return OutgoingMessage(
        delivery_id=delivery.delivery_id,
        headline=headline,
        lines=tuple(lines),
        links=links,
        mentions=people,
        severity=sev,
    )
