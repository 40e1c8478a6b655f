"""Argument types shared by the commands: a bad value is an argparse error (exit 2, the usage
line and what is wrong), checked before any service is contacted. Not a command module."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MIN_TOKEN_LENGTH = 8  # fangxian.reporting.forget.MIN_TOKEN_LENGTH (checked by a test)
_COUNTY = re.compile(r"^\d{6}$")
_DURATION = re.compile(r"^\d+[smh]?$")


def iso_date(text: str) -> str:
    try:
        dt.date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"日期应为 YYYY-MM-DD / not a date: {text!r}") from err
    return text


def iso_time(text: str) -> str:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"时间应为 ISO 格式，如 2020-02-03T08:00 / not an ISO time: {text!r}"
        ) from err
    return text


def duration(text: str) -> str:
    if not _DURATION.match(text.strip().lower()):
        raise argparse.ArgumentTypeError(f"时长应如 10m、90s、1h / not a duration: {text!r}")
    return text


def timezone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"未知时区 / unknown time zone: {text!r}") from err
    return text


def county(text: str) -> str:
    if not _COUNTY.match(text):
        raise argparse.ArgumentTypeError(
            f"区县代码应为 6 位数字 / not a 6-digit county code: {text!r}"
        )
    return text


def subject_token(text: str) -> str:
    if len(text) < MIN_TOKEN_LENGTH:
        raise argparse.ArgumentTypeError(
            f"对象令牌至少 {MIN_TOKEN_LENGTH} 个字符 / a subject token has at least "
            f"{MIN_TOKEN_LENGTH} characters: {text!r}"
        )
    return text
