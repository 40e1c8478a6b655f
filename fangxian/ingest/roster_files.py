"""The roster files a community keeps (``fangxian load staff|duty|escalation``) → contract
records, validated row by row with the line number, the field and a message in Chinese and
English. A row with an error is dropped; the others are loaded.

- staff CSV: 人员编号 staff_id, 社区代码 community_id, 显示名 display_name, 角色 role (门岗 /
  网格员 / 社区工作人员 / 街道 / 医务, or the enum symbol), 企业微信账号 wecom_userid,
  企业微信手机号 wecom_mobile, 钉钉手机号 dingtalk_mobile, 飞书open_id feishu_open_id,
  手机号 phone. Contact details are sealed (``ContactBox``) here, at the ingest point; messages
  show them masked.
- duty CSV: 班次编号 shift_id, 社区代码 community_id, 人员编号 staff_id, 级别 level, 门岗 gates
  (``;``-separated, empty: all), 预警类型 alert_types, 最低级别 min_severity, 日期 days
  (empty / 每天: every day; weekdays ``1-5`` or ``1;3;5``; dates ``2020-02-15;2020-02-16``),
  开始 start and 结束 end (``HH:MM``; an end not after the start ends the next day).
- escalation JSON: one ``EscalationPolicy`` object or a list of them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.dispatch.contacts import ContactBox, Contacts, mask_contact

STAFF_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "staff_id": ("人员编号", "staff_id"),
    "community_id": ("社区代码", "统一社会信用代码", "community_id"),
    "display_name": ("显示名", "姓名", "display_name"),
    "role": ("角色", "role"),
    "wecom_userid": ("企业微信账号", "wecom_userid"),
    "wecom_mobile": ("企业微信手机号", "wecom_mobile"),
    "dingtalk_mobile": ("钉钉手机号", "dingtalk_mobile"),
    "feishu_open_id": ("飞书open_id", "feishu_open_id"),
    "phone": ("手机号", "短信手机号", "phone"),
}
DUTY_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "shift_id": ("班次编号", "shift_id"),
    "community_id": ("社区代码", "统一社会信用代码", "community_id"),
    "staff_id": ("人员编号", "staff_id"),
    "level": ("级别", "响应级别", "level"),
    "gates": ("门岗", "gates"),
    "alert_types": ("预警类型", "alert_types"),
    "min_severity": ("最低级别", "min_severity"),
    "days": ("日期", "星期", "days"),
    "start": ("开始", "开始时间", "start"),
    "end": ("结束", "结束时间", "end"),
}
ROLE_ALIASES = {
    "门岗": "GATE_GUARD",
    "保安": "GATE_GUARD",
    "网格员": "GRID_WORKER",
    "社区工作人员": "COMMUNITY_STAFF",
    "街道": "STREET_OFFICE",
    "街道办": "STREET_OFFICE",
    "医务": "MEDICAL",
    "医务人员": "MEDICAL",
}
ROLES = ("GATE_GUARD", "GRID_WORKER", "COMMUNITY_STAFF", "STREET_OFFICE", "MEDICAL", "OTHER")
SEVERITIES = ("INFO", "WARNING", "CRITICAL")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_CREDIT = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message_zh: str
    message_en: str

    def __str__(self) -> str:
        return (
            f"第{self.line}行 line {self.line} [{self.field}] {self.message_zh} / {self.message_en}"
        )


@dataclass
class RosterLoad:
    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class _Invalid(Exception):
    def __init__(self, field_name: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.problem = (field_name, zh, en)


def _read(source: str | Path) -> str:
    data = Path(source).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def _rows(
    text: str, columns: Mapping[str, tuple[str, ...]], result: RosterLoad
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        result.errors.append(Problem(1, "*", "文件为空", "empty file"))
        return
    names: dict[int, str] = {}
    for i, raw in enumerate(header):
        key = raw.strip().lower()
        for canonical, spellings in columns.items():
            if key in (s.lower() for s in spellings):
                names[i] = canonical
    for required in ("community_id", "staff_id"):
        if required not in names.values():
            result.errors.append(
                Problem(1, required, f"缺少列 {columns[required][0]}", f"missing column {required}")
            )
            return
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        yield line, {names[i]: cell.strip() for i, cell in enumerate(row) if i in names}


def _each(
    text: str,
    columns: Mapping[str, tuple[str, ...]],
    build: Callable[[dict[str, str], Callable[[str, str, str], None]], dict[str, Any]],
) -> RosterLoad:
    result = RosterLoad()
    for line, values in _rows(text, columns, result):

        def warn(field_name: str, zh: str, en: str, line: int = line) -> None:
            result.warnings.append(Problem(line, field_name, zh, en))

        try:
            result.records.append(build(values, warn))
        except _Invalid as err:
            result.errors.append(Problem(line, *err.problem))
    return result


def _community(values: Mapping[str, str]) -> str:
    code = values.get("community_id", "").upper()
    if not _CREDIT.match(code):
        raise _Invalid(
            "community_id", "社区代码不是18位统一社会信用代码", "not an 18-character credit code"
        )
    return code


def _required(values: Mapping[str, str], name: str, zh: str) -> str:
    value = values.get(name, "")
    if not value:
        raise _Invalid(name, f"{zh}为空", f"{name} is empty")
    return value


def load_staff(source: str | Path, box: ContactBox, *, now_ms: int) -> RosterLoad:
    def build(values: dict[str, str], warn: Callable[[str, str, str], None]) -> dict[str, Any]:
        staff_id = _required(values, "staff_id", "人员编号")
        community = _community(values)
        role_raw = values.get("role", "")
        role = ROLE_ALIASES.get(role_raw, role_raw.upper() or "OTHER")
        if role not in ROLES:
            raise _Invalid("role", f"未知角色 {role_raw}", f"unknown role {role_raw!r}")
        for name in ("wecom_mobile", "dingtalk_mobile", "phone"):
            value = values.get(name, "").replace(" ", "").replace("-", "")
            values[name] = value
            if value and not _MOBILE.match(value):
                raise _Invalid(
                    name,
                    f"手机号格式不对 {mask_contact(value)}",
                    f"not a mobile number: {mask_contact(value)}",
                )
        contacts = Contacts(**{k: values.get(k, "") for k in Contacts.__dataclass_fields__})
        if not contacts.masked():
            warn(
                "*",
                "没有任何联系方式：只能在群里按姓名提醒",
                "no contact at all: named in groups only",
            )
        return {
            "staff_id": staff_id,
            "community_id": community,
            "display_name": _required(values, "display_name", "显示名"),
            "role": role,
            "contacts": box.seal(contacts, staff_id, community),
            "active": True,
            "updated_at": now_ms,
        }

    return _each(_read(source), STAFF_COLUMNS, build)


def _minute(values: Mapping[str, str], name: str) -> int:
    match = _HHMM.match(values.get(name, ""))
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise _Invalid(name, "时间应为 HH:MM", "time must be HH:MM")
    return int(match[1]) * 60 + int(match[2])


def _days(raw: str) -> tuple[list[int], list[int]]:
    """(weekdays, dates as epoch days) of the days column."""
    raw = raw.strip()
    if raw in ("", "每天", "daily"):
        return [], []
    weekdays: list[int] = []
    dates: list[int] = []
    for part in re.split(r"[;；、]", raw):
        part = part.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", part):
            try:
                dates.append((dt.date.fromisoformat(part) - _EPOCH).days)
            except ValueError as err:
                raise _Invalid("days", f"日期无效 {part}", f"invalid date {part}") from err
        elif m := re.fullmatch(r"([1-7])-([1-7])", part):
            if int(m[1]) > int(m[2]):
                raise _Invalid("days", f"星期范围无效 {part}", f"invalid weekday range {part}")
            weekdays.extend(range(int(m[1]), int(m[2]) + 1))
        elif re.fullmatch(r"[1-7]", part):
            weekdays.append(int(part))
        else:
            raise _Invalid(
                "days", f"无法识别的日期 {part}", f"not a weekday (1-7), range or date: {part}"
            )
    return sorted(set(weekdays)), sorted(set(dates))


def _split(raw: str) -> list[str]:
    return [p.strip() for p in re.split(r"[;；、]", raw) if p.strip()]


def load_duty(source: str | Path, *, alert_types: tuple[str, ...], now_ms: int) -> RosterLoad:
    def build(values: dict[str, str], warn: Callable[[str, str, str], None]) -> dict[str, Any]:
        level_raw = values.get("level", "") or "1"
        if not level_raw.isdigit() or int(level_raw) < 1:
            raise _Invalid("level", "级别应为正整数", "level must be a positive integer")
        types = _split(values.get("alert_types", ""))
        unknown = [t for t in types if t not in alert_types]
        if unknown:
            raise _Invalid(
                "alert_types", f"未知预警类型 {unknown}", f"unknown alert types {unknown}"
            )
        severity = values.get("min_severity", "") or "INFO"
        if severity not in SEVERITIES:
            raise _Invalid("min_severity", f"未知级别 {severity}", f"unknown severity {severity}")
        start, end = _minute(values, "start"), _minute(values, "end")
        weekdays, dates = _days(values.get("days", ""))
        if start == end:
            warn("end", "开始与结束相同：视为全天24小时", "start equals end: a 24-hour shift")
        return {
            "shift_id": _required(values, "shift_id", "班次编号"),
            "community_id": _community(values),
            "staff_id": _required(values, "staff_id", "人员编号"),
            "level": int(level_raw),
            "gates": _split(values.get("gates", "")),
            "alert_types": types,
            "min_severity": severity,
            "weekdays": weekdays,
            "dates": dates,
            "start_minute": start,
            "end_minute": end,
            "active": True,
            "updated_at": now_ms,
        }

    return _each(_read(source), DUTY_COLUMNS, build)


def _policy_problems(policy: Any, channels: set[str] | None) -> list[tuple[str, str, str]]:
    if not isinstance(policy, dict):
        return [("*", "应为 JSON 对象", "must be a JSON object")]
    out: list[tuple[str, str, str]] = []
    try:
        _community(policy)
    except _Invalid as err:
        out.append(err.problem)
    try:
        ZoneInfo(str(policy.get("timezone", "Asia/Shanghai")))
    except (ZoneInfoNotFoundError, ValueError):
        out.append(("timezone", "未知时区", f"unknown time zone {policy.get('timezone')!r}"))
    steps = policy.get("steps")
    if not isinstance(steps, list) or not steps:
        return [*out, ("steps", "至少需要一个升级步骤", "at least one escalation step")]
    last = -1
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if (
            not isinstance(step, dict)
            or not isinstance(step.get("level"), int)
            or step["level"] < 1
        ):
            out.append((where, "级别应为正整数", "level must be a positive integer"))
            continue
        after = step.get("after_s")
        if not isinstance(after, int) or after < 0 or after < last:
            out.append(
                (where, "after_s 应为不递减的非负整数", "after_s must be >= 0 and not decrease")
            )
        else:
            last = after
        names = step.get("channels", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            out.append((where, "channels 应为字符串列表", "channels must be a list of strings"))
        elif channels is not None:
            missing = [n for n in names if n != "sms" and n not in channels]
            if missing:
                out.append(
                    (where, f"未配置的通道 {missing}", f"channels not configured: {missing}")
                )
    for name in ("immediate_severities", "bypass_quiet_severities"):
        bad = [s for s in policy.get(name, []) if s not in SEVERITIES]
        if bad:
            out.append((name, f"未知级别 {bad}", f"unknown severities {bad}"))
    for name in ("quiet_start_minute", "quiet_end_minute"):
        value = policy.get(name)
        if value is not None and (not isinstance(value, int) or not 0 <= value < 1440):
            out.append((name, "应为 0-1439 的分钟数", "must be a minute of the day 0-1439"))
    if (policy.get("quiet_start_minute") is None) != (policy.get("quiet_end_minute") is None):
        out.append(("quiet_end_minute", "免打扰起止须同时设置", "set both ends of quiet hours"))
    return out


def load_escalation(source: str | Path, *, channels: set[str] | None, now_ms: int) -> RosterLoad:
    """``channels``: the configured channel names to check steps against (None: unchecked)."""
    text = _read(source)
    result = RosterLoad()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        result.errors.append(
            Problem(err.lineno, "*", f"JSON 格式错误：{err.msg}", f"invalid JSON: {err.msg}")
        )
        return result
    items = data if isinstance(data, list) else [data]
    starts = _item_lines(text) if isinstance(data, list) else [1]
    for i, policy in enumerate(items):
        line = starts[i] if i < len(starts) else 1
        problems = _policy_problems(policy, channels)
        if problems:
            result.errors.extend(Problem(line, *p) for p in problems)
            continue
        result.records.append({**policy, "updated_at": now_ms})
    return result


def _item_lines(text: str) -> list[int]:
    """Line number where each element of a top-level JSON array starts."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    lines: list[int] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
