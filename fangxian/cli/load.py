"""``fangxian load``: a community's register (CSV) or rules (JSON), or the on-duty roster
(staff and duty CSV, escalation JSON) → the compacted reference topics (``fangxian/ingest/``).
Every record is validated before any is produced."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from fangxian.cli.errors import PROBLEMS_FOUND, input_error
from fangxian.core.progress import Progress
from fangxian.core.settings import Settings
from schemas.topics import RECORD_OF_KIND, ROSTER_RECORD_OF_KIND

KINDS = {**RECORD_OF_KIND, **ROSTER_RECORD_OF_KIND}

if TYPE_CHECKING:
    from fangxian.ingest.reference_csv import LoadResult
    from fangxian.ingest.roster_files import RosterLoad

# A problem on line 0 (encoding) or 1 (the header) is about the file, not one row.
FILE_LEVEL_LINES = (0, 1)


def _data_rows(path: Path) -> int | None:
    """Lines after the header: the total for the progress bar (a quoted cell with a line break
    makes it an estimate)."""
    try:
        with path.open("rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return max(0, lines - 1)
    except OSError:
        return None


def _read(args: argparse.Namespace, settings: Settings) -> LoadResult | RosterLoad:
    from fangxian.ingest.loading import LoadError, read_kind
    from fangxian.ingest.roster import read_roster

    path = Path(args.file)
    if not path.is_file():
        raise input_error(args.file, "文件不存在", "no such file")
    if args.kind in ROSTER_RECORD_OF_KIND:  # a small file: no progress
        try:
            return read_roster(args.kind, path, settings)
        except LoadError as err:
            raise input_error(args.file, err.message_zh, err.message_en) from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise input_error(args.file, f"无法解析 {err}", f"cannot parse it: {err}") from err
    total = None if args.kind == "rules" else _data_rows(path)
    try:
        with Progress(
            f"读取校验 read {path.name}", total=total, interval_s=settings.progress_interval_s
        ) as progress:
            progress.counters.update(validated=0, rejected=0)
            return read_kind(args.kind, path, settings, progress=progress)
    except LoadError as err:
        raise input_error(args.file, err.message_zh, err.message_en) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise input_error(args.file, f"无法解析 {err}", f"cannot parse it: {err}") from err


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.ingest.produce import RecordProducer
    from schemas import Codec, InvalidEvent

    if args.kind == "devices":  # the gate edge's device register (docs/edge.md)
        from fangxian.cli.edge import cmd_load_devices

        return cmd_load_devices(args, settings)
    result = _read(args, settings)
    file_level = [p for p in result.errors if p.line in FILE_LEVEL_LINES]
    if file_level and not result.records:
        problem = file_level[0]
        raise input_error(args.file, problem.message_zh, problem.message_en)
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
        raise input_error(
            args.file, f"无效记录 {record_name}: {err}", f"invalid {record_name} record: {err}"
        ) from err
    if args.dry_run:
        print(
            f"检查通过 checked: {len(result.records)} records, {len(result.errors)} rows "
            "rejected (--dry-run: nothing produced)"
        )
        return PROBLEMS_FOUND if result.errors else 0
    # acks=all: on a replicated cluster a register row is acknowledged once
    # min.insync.replicas brokers have it, so the leader dying right after cannot lose it
    producer = RecordProducer(
        settings, codec, acks="all", enable_idempotence=settings.producer_idempotence
    )
    try:
        with Progress(
            f"发送 produce {args.kind}",
            total=len(result.records),
            interval_s=settings.progress_interval_s,
        ) as progress:
            for record in result.records:
                producer.send(record_name, record)
                progress.advance()
            producer.flush()
    finally:
        producer.close()
    print(
        f"已发送 produced {len(result.records)} {args.kind} records to "
        f"{getattr(settings.topics, args.kind)}; 拒绝 rejected rows: {len(result.errors)}"
    )
    return PROBLEMS_FOUND if result.errors else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = sub.add_parser(
        "load",
        help="导入参考数据 load residents/passes/vehicles (CSV) or rules (JSON); "
        "值班名册 staff/duty (CSV) or escalation (JSON)",
    )
    load.add_argument("kind", choices=sorted([*KINDS, "devices"]))
    load.add_argument("file", help="CSV (UTF-8 or GB18030; Chinese or English headers) or JSON")
    load.add_argument("--dry-run", action="store_true", help="validate only, produce nothing")
    load.add_argument(
        "--out", help="devices: where to write the sealed register (FANGXIAN_EDGE_REGISTER)"
    )
    load.set_defaults(func=cmd_load)
