"""``fangxian dispatch`` (the on-duty dispatcher as a process) and ``fangxian load
staff|duty|escalation`` (the roster → its compacted reference topics)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from fangxian.core.settings import Settings

ROSTER_RECORDS = {"staff": "StaffMember", "duty": "DutyShift", "escalation": "EscalationPolicy"}


def read_roster(kind: str, path: Path, settings: Settings) -> object:
    from schemas import contract
    from sinks.channels.config import load_channels
    from streams.dispatch.contacts import ContactBox
    from streams.dispatch.roster_files import load_duty, load_escalation, load_staff

    now = int(time.time() * 1000)
    if kind == "staff":
        try:
            box = ContactBox(settings.roster_key)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        return load_staff(path, box, now_ms=now)
    if kind == "duty":
        return load_duty(path, alert_types=contract.ALERT_TYPES, now_ms=now)
    names = (
        set(load_channels(settings.dispatch_channels_file))
        if settings.dispatch_channels_file
        else None
    )
    return load_escalation(path, channels=names, now_ms=now)


def cmd_load_roster(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.produce import RecordProducer
    from schemas import Codec, InvalidEvent
    from streams.dispatch.roster_files import RosterLoad

    result = read_roster(args.kind, Path(args.file), settings)
    assert isinstance(result, RosterLoad)
    for problem in result.errors:
        print(f"✗ {problem}")
    for problem in result.warnings:
        print(f"! {problem}")
    record_name = ROSTER_RECORDS[args.kind]
    codec = Codec()
    try:
        for record in result.records:
            codec.encode(record_name, record)
    except InvalidEvent as err:
        print(f"✗ 无效记录 invalid record: {err}")
        return 2
    if args.dry_run:
        print(f"检查通过 checked: {len(result.records)} records, {len(result.errors)} rejected")
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


def cmd_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dispatch.stage import serve

    asyncio.run(serve(settings, with_action_sink=not args.no_action_sink))
    return 0


def add_dispatch_command(sub: argparse._SubParsersAction) -> None:
    dispatch = sub.add_parser(
        "dispatch", help="值班派单 the on-duty dispatcher (alerts → staff, ack, escalation)"
    )
    dispatch.add_argument(
        "--no-action-sink",
        action="store_true",
        help="do not write alert.actions to ClickHouse from this process (the sink stage does)",
    )
    dispatch.set_defaults(func=cmd_dispatch)
