"""Load a community's registers (residents, visitor passes, vehicles) from CSV files.

This is an ingest point for personal data: raw ID numbers and plates are checked, turned into
``Pseudonymiser`` tokens and dropped before anything leaves a loader. Records are plain dicts in
the contract's shape (``Resident``, ``VisitorPass``, ``Vehicle``); errors and warnings carry the
CSV line number, the field and a message in Chinese and English, with any ID number masked.

Files are UTF-8 with or without a BOM (Excel's "CSV UTF-8"); a file that is not UTF-8 is read as
GB18030 (what Excel writes on a Chinese Windows) with a warning. Headers may be Chinese or English
(see ``RESIDENT_COLUMNS`` & co.); columns not listed — a name, an address — are ignored, never
copied into a record.

Row handling: an error drops the row; a warning keeps it. A community code whose GB 32100 check
character fails is a warning (real codes exist that fail it); a resident ID whose GB 11643 check
fails is an error, because a mistyped ID would become a token no scan ever matches.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fangxian.core.codes import (
    credit_code_check_ok,
    credit_code_format_ok,
    normalise_id_number,
    normalise_phone,
    normalise_plate,
    plate_ok,
    resident_id_check_ok,
)
from fangxian.core.privacy import Pseudonymiser, mask_id_number, mask_plate
from fangxian.core.progress import Progress
from schemas.topics import RECORD_OF_KIND, record_key

__all__ = [
    "PASS_COLUMNS",
    "RESIDENT_COLUMNS",
    "VEHICLE_COLUMNS",
    "LoadError",
    "LoadResult",
    "RowError",
    "load_passes",
    "load_residents",
    "load_vehicles",
]

log = logging.getLogger(__name__)

Source = str | Path | TextIO

# canonical field → accepted header spellings (compared after strip + lower-case)
RESIDENT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "id_number": ("身份证号", "身份证号码", "证件号码", "id_number"),
    "phone": ("手机号", "手机号码", "联系电话", "phone"),
    "community_id": ("社区代码", "社区统一社会信用代码", "统一社会信用代码", "community_id"),
    "household_no": ("户号", "household_no"),
    "building": ("楼栋", "楼号", "building"),  # optional: the scope of CLUSTER_SUSPECTED
    "status": ("状态", "人员状态", "status"),
    "observation_start": ("观察开始日期", "observation_start"),
    "key_groups": ("重点人群", "key_groups"),
    "face_consent": ("人脸授权", "人脸识别授权", "face_consent"),
}
PASS_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "pass_no": ("通行证号", "通行证编号", "pass_no"),
    "community_id": ("社区代码", "社区统一社会信用代码", "统一社会信用代码", "community_id"),
    "host_id_number": ("被访居民身份证号", "邀请人身份证号", "host_id_number"),
    "valid_from": ("生效时间", "有效期起", "valid_from"),
    "valid_until": ("失效时间", "有效期止", "valid_until"),
    "max_entries": ("最多进入次数", "可进入次数", "max_entries"),
    "revoked": ("已作废", "已撤销", "revoked"),
}
VEHICLE_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "plate": ("车牌号", "车牌号码", "plate"),
    "community_id": ("社区代码", "社区统一社会信用代码", "统一社会信用代码", "community_id"),
    "owner_id_number": ("车主身份证号", "owner_id_number"),
    "valid_until": ("有效期至", "失效时间", "valid_until"),
}
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "residents": ("id_number", "community_id", "household_no"),
    "passes": ("pass_no", "community_id", "host_id_number", "valid_from", "valid_until"),
    "vehicles": ("plate", "community_id"),
}

STATUS_NAMES: Mapping[str, str] = {
    "正常": "NORMAL",
    "居家观察": "HOME_OBSERVATION",
    "居家医学观察": "HOME_OBSERVATION",
    "集中隔离": "CENTRALIZED_ISOLATION",
    "集中隔离观察": "CENTRALIZED_ISOLATION",
    "住院": "HOSPITALIZED",
    "住院治疗": "HOSPITALIZED",
    "康复": "RECOVERED",
    "已康复": "RECOVERED",
}
STATUS_SYMBOLS = frozenset(STATUS_NAMES.values())
KEY_GROUP_NAMES: Mapping[str, str] = {
    "孕妇": "PREGNANT",
    "孕产妇": "PREGNANT",
    "老人": "ELDERLY",
    "老年人": "ELDERLY",
    "高龄老人": "ELDERLY",
    "慢性病": "CHRONIC_DISEASE",
    "慢性病患者": "CHRONIC_DISEASE",
    "残疾人": "DISABLED",
    "残疾": "DISABLED",
    "儿童": "CHILD",
}
_KEY_GROUP_SYMBOL = re.compile(r"[A-Z][A-Z_]*")
_LIST_SEPARATORS = re.compile(r"[;；、,，|/\s]+")
_TRUE = frozenset({"是", "有", "同意", "已授权", "true", "yes", "y", "1"})
_FALSE = frozenset({"否", "无", "不同意", "未授权", "false", "no", "n", "0", ""})


@dataclass(frozen=True)
class RowError:
    """One problem with one CSV line (line 1 is the header). Never holds a raw ID number."""

    line: int
    field: str
    message_zh: str
    message_en: str

    def __str__(self) -> str:
        return f"line {self.line} [{self.field}] {self.message_zh} / {self.message_en}"


@dataclass
class LoadResult:
    """Records that passed, rows dropped with their errors, and warnings on kept rows."""

    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class LoadError(ValueError):
    """A file that cannot be loaded at all (not text, not CSV, not JSON, not records): the
    message says why in Chinese and English. Row-level problems are ``RowError``s instead."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(f"{zh} / {en}")
        self.message_zh, self.message_en = zh, en


class _RowInvalid(Exception):
    def __init__(self, field_name: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.field_name, self.zh, self.en = field_name, zh, en


class _Row:
    """One CSV row: canonical-field access plus warnings collected while it is parsed."""

    def __init__(self, line: int, values: Mapping[str, str]) -> None:
        self.line = line
        self.values = values
        self.warnings: list[RowError] = []

    def get(self, name: str) -> str:
        return (self.values.get(name) or "").strip()

    def warn(self, field_name: str, zh: str, en: str) -> None:
        self.warnings.append(RowError(self.line, field_name, zh, en))


# --- reading ---------------------------------------------------------------------------------


def _read_text(source: Source, result: LoadResult) -> TextIO:
    if not isinstance(source, str | Path):
        return source
    data = Path(source).read_bytes()
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError:
        result.warnings.append(
            RowError(
                0,
                "file",
                "文件不是 UTF-8 编码，已按 GB18030 读取",
                "file is not UTF-8; read as GB18030",
            )
        )
        try:
            return io.StringIO(data.decode("gb18030"), newline="")
        except UnicodeDecodeError as err:
            raise LoadError(
                "文件既不是 UTF-8 也不是 GB18030 编码的文本",
                f"file is neither UTF-8 nor GB18030 text (byte {err.start})",
            ) from err


def _rows(
    source: Source, columns: Mapping[str, tuple[str, ...]], kind: str, result: LoadResult
) -> Iterator[_Row]:
    reader = csv.reader(_read_text(source, result))
    try:
        yield from _parse_rows(reader, columns, kind, result)
    except csv.Error as err:
        raise LoadError(
            f"第{reader.line_num}行不是有效的 CSV",
            f"line {reader.line_num} is not valid CSV: {err}",
        ) from err


def _parse_rows(
    reader: Any, columns: Mapping[str, tuple[str, ...]], kind: str, result: LoadResult
) -> Iterator[_Row]:
    header = next(reader, None)
    if header is None:
        result.errors.append(RowError(1, "header", "文件为空", "file is empty"))
        return
    lookup = {alias.lower(): name for name, aliases in columns.items() for alias in aliases}
    index: dict[str, int] = {}
    for i, raw in enumerate(header):
        name = lookup.get(raw.strip().lstrip("\ufeff").lower())
        if name is not None and name not in index:
            index[name] = i
    missing = [name for name in _REQUIRED[kind] if name not in index]
    if missing:
        result.errors.append(
            RowError(
                1,
                ",".join(missing),
                "缺少必需的列：" + "、".join(columns[m][0] for m in missing),
                "missing required columns: " + ", ".join(missing),
            )
        )
        return
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        values = {name: cells[i] if i < len(cells) else "" for name, i in index.items()}
        yield _Row(reader.line_num, values)


def _load(
    source: Source,
    columns: Mapping[str, tuple[str, ...]],
    kind: str,
    parse: Callable[[_Row], dict[str, Any]],
    progress: Progress | None = None,
) -> LoadResult:
    result = LoadResult()
    keys: set[bytes] = set()
    key_field = {"residents": "resident_id", "passes": "pass_id", "vehicles": "vehicle_id"}[kind]
    record_name = RECORD_OF_KIND[kind]
    for row in _rows(source, columns, kind, result):
        if progress is not None:
            progress.advance()
        try:
            record = parse(row)
        except _RowInvalid as err:
            result.errors.append(RowError(row.line, err.field_name, err.zh, err.en))
            if progress is not None:
                progress.count("rejected")
            continue
        # a duplicate is a second record of the same key on the topic: for vehicles the same
        # plate in the same community (one plate in two communities is two registrations)
        key = record_key(record_name, record)
        if key in keys:
            result.errors.append(
                RowError(row.line, key_field, "与前面的行重复", "duplicate of an earlier row")
            )
            if progress is not None:
                progress.count("rejected")
            continue
        keys.add(key)
        result.records.append(record)
        result.warnings.extend(row.warnings)
        if progress is not None:
            progress.count("validated")
    log.info(
        "loaded %s: %d records, %d rows rejected, %d warnings",
        kind,
        len(result.records),
        len(result.errors),
        len(result.warnings),
    )
    return result


# --- field parsers ---------------------------------------------------------------------------


def _required(row: _Row, name: str, zh_label: str) -> str:
    value = row.get(name)
    if not value:
        raise _RowInvalid(name, f"{zh_label}为空", f"{name} is empty")
    return value


def _id_number(row: _Row, name: str, *, required: bool = True) -> str | None:
    raw = row.get(name)
    if not raw:
        if required:
            raise _RowInvalid(name, "身份证号为空", f"{name} is empty")
        return None
    id18 = normalise_id_number(raw)
    if not resident_id_check_ok(id18):
        raise _RowInvalid(
            name,
            f"身份证号无效（长度、出生日期或校验位错误）：{mask_id_number(id18)}",
            f"invalid resident ID (length, birth date or check digit): {mask_id_number(id18)}",
        )
    return id18


def _community_id(row: _Row) -> str:
    code = _required(row, "community_id", "社区代码").upper()
    if not credit_code_format_ok(code):
        raise _RowInvalid(
            "community_id",
            f"社区代码不是 18 位统一社会信用代码：{code}",
            f"community code is not an 18-character unified social credit code: {code}",
        )
    if not credit_code_check_ok(code):
        row.warn(
            "community_id",
            f"社区代码校验位不符（已保留，请核对）：{code}",
            f"community code check character does not match (kept, please verify): {code}",
        )
    return code


def _flag(row: _Row, name: str) -> bool:
    value = row.get(name).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _RowInvalid(name, f"应为“是”或“否”：{value}", f"expected yes/no: {value}")


_LOCAL_TIME = re.compile(
    r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


def _parse_local(value: str) -> tuple[dt.date, dt.time | None] | None:
    match = _LOCAL_TIME.fullmatch(value)
    if match is None:
        return None
    y, m, d, hh, mm, ss = match.groups()
    try:
        day = dt.date(int(y), int(m), int(d))
        moment = None if hh is None else dt.time(int(hh), int(mm), int(ss or 0))
    except ValueError:
        return None
    return day, moment


def _date_days(row: _Row, name: str) -> int | None:
    value = row.get(name)
    if not value:
        return None
    parsed = _parse_local(value)
    if parsed is None or parsed[1] is not None:
        raise _RowInvalid(
            name,
            f"日期无效（格式 YYYY-MM-DD）：{value}",
            f"not a valid date (YYYY-MM-DD): {value}",
        )
    return (parsed[0] - dt.date(1970, 1, 1)).days


def _local_time_ms(
    row: _Row, name: str, tz: dt.tzinfo, *, required: bool, end_of_day: bool = False
) -> int | None:
    """A local date-time (``YYYY-MM-DD HH:MM[:SS]``, or ISO 8601 with an offset) → epoch ms.

    A bare date means the start of that local day, or with ``end_of_day`` the start of the next
    (so "valid until 2020-02-20" includes all of the 20th).
    """
    value = row.get(name)
    if not value:
        if required:
            raise _RowInvalid(name, "时间为空", f"{name} is empty")
        return None
    parsed = _parse_local(value)
    moment: dt.datetime | None = None
    if parsed is not None:
        day, clock = parsed
        if clock is None:
            day += dt.timedelta(days=1 if end_of_day else 0)
        moment = dt.datetime.combine(day, clock or dt.time(), tzinfo=tz)
    else:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
    if moment is None:
        raise _RowInvalid(
            name,
            f"时间无效（格式 YYYY-MM-DD HH:MM）：{value}",
            f"not a valid time (YYYY-MM-DD HH:MM): {value}",
        )
    return int(moment.timestamp() * 1000)


def _positive_int(row: _Row, name: str, default: int) -> int:
    value = row.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise _RowInvalid(name, f"应为正整数：{value}", f"must be a positive integer: {value}")
    return number


def _status(row: _Row) -> str:
    value = row.get("status")
    if not value:
        return "NORMAL"
    status = STATUS_NAMES.get(value) or (value.upper() if value.upper() in STATUS_SYMBOLS else None)
    if status is None:
        raise _RowInvalid(
            "status",
            f"未知的人员状态：{value}（应为 正常/居家观察/集中隔离/住院/康复）",
            f"unknown status: {value} (expected NORMAL, HOME_OBSERVATION, "
            "CENTRALIZED_ISOLATION, HOSPITALIZED or RECOVERED)",
        )
    return status


def _key_groups(row: _Row) -> list[str]:
    groups: list[str] = []
    for item in _LIST_SEPARATORS.split(row.get("key_groups")):
        if not item:
            continue
        symbol = KEY_GROUP_NAMES.get(item) or (
            item.upper() if _KEY_GROUP_SYMBOL.fullmatch(item.upper()) else None
        )
        if symbol is None:
            row.warn(
                "key_groups",
                f"未知的重点人群类别，已忽略：{item}",
                f"unknown key group ignored: {item}",
            )
        elif symbol not in groups:
            groups.append(symbol)
    return groups


def _timezone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        raise ValueError(f"unknown time zone / 未知时区: {name}") from None


def _now_ms(updated_at_ms: int | None) -> int:
    return int(time.time() * 1000) if updated_at_ms is None else updated_at_ms


# --- loaders ---------------------------------------------------------------------------------


def load_residents(
    source: Source,
    pseudonymiser: Pseudonymiser,
    *,
    updated_at_ms: int | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Resident register → ``Resident`` records (resident_id and household_id are tokens).

    ``household_id`` = token("household", community_id + household_no): the community code has a
    fixed length, so the concatenation is unambiguous and the same 户号 in two communities gives
    two households. A phone column, if present, is checked (bad → warning) and not kept.
    """
    updated_at = _now_ms(updated_at_ms)

    def parse(row: _Row) -> dict[str, Any]:
        id18 = _id_number(row, "id_number")
        assert id18 is not None
        community_id = _community_id(row)
        household_no = _required(row, "household_no", "户号")
        status = _status(row)
        observation_start = _date_days(row, "observation_start")
        if status == "HOME_OBSERVATION" and observation_start is None:
            row.warn(
                "observation_start",
                "居家观察人员缺少观察开始日期，无法判断观察期满",
                "home observation without a start date: completion cannot be computed",
            )
        if row.get("phone"):
            try:
                normalise_phone(row.get("phone"))
            except ValueError:
                row.warn("phone", "手机号格式不正确", "phone number is not valid")
        return {
            "resident_id": pseudonymiser.token("resident", id18),
            "community_id": community_id,
            "household_id": pseudonymiser.token("household", community_id + household_no),
            "status": status,
            "observation_start": observation_start,
            "key_groups": _key_groups(row),
            "face_consent": _flag(row, "face_consent"),
            "updated_at": updated_at,
            "building_id": row.get("building") or None,
        }

    return _load(source, RESIDENT_COLUMNS, "residents", parse, progress)


def load_passes(
    source: Source,
    pseudonymiser: Pseudonymiser,
    *,
    timezone: str = "Asia/Shanghai",
    updated_at_ms: int | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Visitor passes → ``VisitorPass`` records.

    ``pass_id`` = token("pass", community_id + pass_no): the pass is the visitor's QR code, so
    its id must not be guessable from a running number. Times are local to ``timezone`` (the
    community's) unless written with an offset; blank ``max_entries`` means 1.
    """
    tz = _timezone(timezone)
    updated_at = _now_ms(updated_at_ms)

    def parse(row: _Row) -> dict[str, Any]:
        pass_no = _required(row, "pass_no", "通行证号")
        community_id = _community_id(row)
        host = _id_number(row, "host_id_number")
        assert host is not None
        valid_from = _local_time_ms(row, "valid_from", tz, required=True)
        valid_until = _local_time_ms(row, "valid_until", tz, required=True, end_of_day=True)
        assert valid_from is not None and valid_until is not None
        if valid_until <= valid_from:
            raise _RowInvalid(
                "valid_until", "失效时间早于生效时间", "valid_until is not after valid_from"
            )
        return {
            "pass_id": pseudonymiser.token("pass", community_id + pass_no),
            "community_id": community_id,
            "host_resident_id": pseudonymiser.token("resident", host),
            "valid_from": valid_from,
            "valid_until": valid_until,
            "max_entries": _positive_int(row, "max_entries", 1),
            "revoked": _flag(row, "revoked"),
            "updated_at": updated_at,
        }

    return _load(source, PASS_COLUMNS, "passes", parse, progress)


def load_vehicles(
    source: Source,
    pseudonymiser: Pseudonymiser,
    *,
    timezone: str = "Asia/Shanghai",
    updated_at_ms: int | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Registered vehicles → ``Vehicle`` records; ``vehicle_id`` = token("plate", plate). A
    registration is keyed by (community, plate token) (``schemas.topics.vehicle_key``): a plate
    registered in two communities is two records, both held."""
    tz = _timezone(timezone)
    updated_at = _now_ms(updated_at_ms)

    def parse(row: _Row) -> dict[str, Any]:
        plate = normalise_plate(_required(row, "plate", "车牌号"))
        if not plate_ok(plate):
            masked = mask_plate(plate)
            raise _RowInvalid(
                "plate", f"车牌号格式不正确：{masked}", f"not a valid plate: {masked}"
            )
        community_id = _community_id(row)
        owner = _id_number(row, "owner_id_number", required=False)
        return {
            "vehicle_id": pseudonymiser.token("plate", plate),
            "community_id": community_id,
            "owner_resident_id": None if owner is None else pseudonymiser.token("resident", owner),
            "valid_until": _local_time_ms(row, "valid_until", tz, required=False, end_of_day=True),
            "updated_at": updated_at,
        }

    return _load(source, VEHICLE_COLUMNS, "vehicles", parse, progress)
