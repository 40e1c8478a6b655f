"""``fangxian load``: a community's register (CSV) or rules (JSON) → the compacted reference
topics. Validation and pseudonymisation happen here, before anything is produced: the raw
resident ID, phone or plate never reaches Kafka."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fangxian.core.settings import Settings
from fangxian.identity import Pseudonymiser
from fangxian.produce import RecordProducer
from fangxian.reference_csv import LoadResult, load_passes, load_residents, load_vehicles
from schemas import Codec, InvalidEvent

RECORD_OF_KIND = {
    "residents": "Resident",
    "passes": "VisitorPass",
    "vehicles": "Vehicle",
    "rules": "CommunityRules",
}


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
    """One CommunityRules object or a list of them; missing fields take contract defaults."""
    data = json.loads(path.read_text(encoding="utf-8"))
    records: list[dict[str, Any]] = data if isinstance(data, list) else [data]
    return LoadResult(records=records)


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.dispatching import ROSTER_RECORDS, cmd_load_roster

    if args.kind in ROSTER_RECORDS:
        return cmd_load_roster(args, settings)
    result = read_kind(args.kind, Path(args.file), settings)
    for problem in result.errors:
        print(
            f"✗ 第{problem.line}行 line {problem.line} [{problem.field}] "
            f"{problem.message_zh} / {problem.message_en}"
        )
    for problem in result.warnings:
        print(
            f"! 第{problem.line}行 line {problem.line} [{problem.field}] "
            f"{problem.message_zh} / {problem.message_en}"
        )
    record_name = RECORD_OF_KIND[args.kind]
    codec = Codec()
    try:
        for record in result.records:
            codec.encode(record_name, record)  # validate every record before producing any
    except InvalidEvent as err:
        print(f"✗ 无效记录 invalid record: {err}")
        return 2
    if args.dry_run:
        print(
            f"检查通过 checked: {len(result.records)} records, {len(result.errors)} rows "
            "rejected (--dry-run: nothing produced)"
        )
        return 1 if result.errors else 0
    producer = RecordProducer(settings, codec)
    try:
        for record in result.records:
            producer.send(record_name, record)
    finally:
        producer.close()
    print(
        f"已发送 produced {len(result.records)} {args.kind} records to "
        f"{getattr(settings.topics, args.kind)}; 拒绝 rejected rows: {len(result.errors)}"
    )
    return 1 if result.errors else 0


def add_load_command(sub: argparse._SubParsersAction) -> None:
    load = sub.add_parser(
        "load", help="导入参考数据 load residents/passes/vehicles (CSV) or rules (JSON)"
    )
    from fangxian.dispatching import ROSTER_RECORDS

    load.add_argument("kind", choices=sorted([*RECORD_OF_KIND, *ROSTER_RECORDS]))
    load.add_argument("file", help="CSV (UTF-8 or GB18030; Chinese or English headers) or JSON")
    load.add_argument("--dry-run", action="store_true", help="validate only, produce nothing")
    load.set_defaults(func=cmd_load)
