"""``fangxian load``: a community's register (CSV) or rules (JSON), or the on-duty roster
(staff and duty CSV, escalation JSON) → the compacted reference topics (``fangxian/ingest/``).
Every record is validated before any is produced."""

from __future__ import annotations

import argparse
from pathlib import Path

from fangxian.core.settings import Settings
from schemas.topics import RECORD_OF_KIND, ROSTER_RECORD_OF_KIND

KINDS = {**RECORD_OF_KIND, **ROSTER_RECORD_OF_KIND}


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.ingest.loading import LoadError, read_kind
    from fangxian.ingest.produce import RecordProducer
    from fangxian.ingest.roster import read_roster
    from schemas import Codec, InvalidEvent

    path = Path(args.file)
    try:
        result = (
            read_roster(args.kind, path, settings)
            if args.kind in ROSTER_RECORD_OF_KIND
            else read_kind(args.kind, path, settings)
        )
    except LoadError as err:
        print(f"✗ 无法导入 cannot load {args.file}: {err}")
        return 2
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
    record_name = KINDS[args.kind]
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = sub.add_parser(
        "load",
        help="导入参考数据 load residents/passes/vehicles (CSV) or rules (JSON); "
        "值班名册 staff/duty (CSV) or escalation (JSON)",
    )
    load.add_argument("kind", choices=sorted(KINDS))
    load.add_argument("file", help="CSV (UTF-8 or GB18030; Chinese or English headers) or JSON")
    load.add_argument("--dry-run", action="store_true", help="validate only, produce nothing")
    load.set_defaults(func=cmd_load)
