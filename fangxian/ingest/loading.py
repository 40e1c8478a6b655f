"""Reading a community's register (CSV) or rules (JSON) → the compacted reference
topics. Validation and pseudonymisation happen here, before anything is produced: the raw
resident ID, phone or plate never reaches Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fangxian.core.privacy import Pseudonymiser
from fangxian.core.settings import Settings
from fangxian.ingest.reference_csv import (
    LoadError,
    LoadResult,
    load_passes,
    load_residents,
    load_vehicles,
)

__all__ = ["LoadError", "read_kind"]


def read_kind(kind: str, path: Path, settings: Settings) -> LoadResult:
    """Parse and validate ``path``; pure apart from reading the file."""
    if kind == "rules":
        return _rules_from_json(path)
    if not settings.pseudonym_key:
        raise SystemExit(
            "FANGXIAN_PSEUDONYM_KEY is not set: resident IDs are pseudonymised with a keyed HMAC "
            "before they leave this machine (未设置假名化密钥 FANGXIAN_PSEUDONYM_KEY)"
        )
    pseudonymiser = Pseudonymiser.from_text(settings.pseudonym_key)
    if kind == "residents":
        return load_residents(path, pseudonymiser)
    if kind == "passes":
        return load_passes(path, pseudonymiser, timezone=settings.default_timezone)
    return load_vehicles(path, pseudonymiser, timezone=settings.default_timezone)


def _rules_from_json(path: Path) -> LoadResult:
    """One CommunityRules object or a list of them; missing fields take contract defaults.

    Raises LoadError for a file that is not UTF-8 JSON holding objects."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise LoadError("文件不是 UTF-8 编码", f"not UTF-8 text: {err.reason}") from err
    except (json.JSONDecodeError, RecursionError) as err:
        raise LoadError("文件不是有效的 JSON", f"not valid JSON: {err}") from err
    records: list[Any] = data if isinstance(data, list) else [data]
    if not all(isinstance(record, dict) for record in records):
        raise LoadError(
            "规则须为 JSON 对象或对象数组", "rules must be a JSON object or a list of objects"
        )
    return LoadResult(records=records)
