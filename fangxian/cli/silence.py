"""``fangxian silence add|list|expire``: silences from the command line, the same records the
console writes (``alert.silences``; docs/dispatch.md, "Silences and inhibition").

``--as STAFF_ID`` names who silences: a staff member in ``reference.staff`` whose role may
silence (``fangxian.console.silences.SILENCE_ROLES``) in that community — the same rule as the
console. The Kafka principal is the operator's (``loader``); the record says who asked.

Exit status: 0 done; 1 refused (unknown staff member or silence, a role that may not silence,
another community); 2 a value that cannot be a silence (no matcher, a bad duration).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any
from zoneinfo import ZoneInfo

from fangxian.cli.errors import PROBLEMS_FOUND, USAGE
from fangxian.core.settings import Settings


def _now_ms() -> int:
    return int(time.time() * 1000)


def _read_topic(settings: Settings, topic: str) -> list[tuple[str, bytes | None]]:
    """Every record of a compacted topic, from the beginning to its current end."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import UnknownTopicOrPartitionError

    from fangxian.core.kafka_security import kafka_client_kwargs
    from fangxian.core.timeouts import kafka_admin_timeouts

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        **kafka_admin_timeouts(settings),
        **kafka_client_kwargs(settings),
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise UnknownTopicOrPartitionError(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[str, bytes | None]] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for messages in consumer.poll(timeout_ms=500, max_records=5000).values():
                out.extend((m.key.decode() if m.key else "", m.value) for m in messages)
        return out
    finally:
        consumer.close()


def _silences(settings: Settings) -> Any:
    from schemas import Codec, InvalidEvent
    from streams.dispatch.silences import SilenceBook

    codec = Codec()
    book = SilenceBook()
    for key, value in _read_topic(settings, settings.topics.silences):
        try:
            book.apply(key, None if value is None else codec.decode("Silence", value))
        except InvalidEvent as err:
            print(f"✗ 跳过无法解码的静默 skipping an undecodable silence {key}: {err}")
    return book


def _viewer(settings: Settings, staff_id: str) -> Any:
    """The staff member ``staff_id`` as the console would see them, or None."""
    from fangxian.console.roster import StaffDirectory
    from fangxian.console.scope import Viewer
    from schemas import Codec, InvalidEvent

    codec = Codec()
    directory = StaffDirectory({})
    for key, value in _read_topic(settings, settings.topics.staff):
        if key != staff_id:
            continue
        try:
            directory.apply(key, None if value is None else codec.decode("StaffMember", value))
        except InvalidEvent:
            continue
    entry = directory.get(staff_id)
    return Viewer(entry) if entry is not None else None


def _refused(zh: str, en: str) -> int:
    print(f"✗ {zh}", file=sys.stderr)
    print(f"✗ {en}", file=sys.stderr)
    return PROBLEMS_FOUND


def _audit(
    settings: Settings, staff_id: str, community: str, details: dict[str, str], *, denied: bool
) -> bool:
    """The audit row of a silence set, expired or refused from the command line, before
    anything is written (as the console's): False when it cannot be kept — nothing is done."""
    from dataclasses import replace

    from fangxian.console.audit import community_scope
    from fangxian.reporting.audit import record_cli_action, staff_entry
    from sinks.audit import ALERT_SILENCE, DENIED, OK

    entry = staff_entry(settings, ALERT_SILENCE, scope=community_scope(community), details=details)
    entry = replace(entry, actor=staff_id, outcome=DENIED if denied else OK)
    return record_cli_action(settings, entry, nothing_done="未执行 nothing done")


def _check_staff(settings: Settings, staff_id: str, community: str | None) -> tuple[Any, str | int]:
    """(viewer, community) when ``staff_id`` may silence in ``community`` (their own when
    None), else (None, exit status)."""
    from fangxian.console.silences import may_silence

    viewer = _viewer(settings, staff_id)
    if viewer is None:
        return None, _refused(
            f"人员名册中没有在岗人员 {staff_id}（fangxian load staff）",
            f"no active staff member {staff_id} in reference.staff (`fangxian load staff`)",
        )
    target = community or viewer.staff.community_id
    if not may_silence(viewer, target):
        _audit(settings, staff_id, target, {"reason": "role or scope", "via": "cli"}, denied=True)
        return None, _refused(
            f"{staff_id}（{viewer.staff.role}）不能在社区 {target} 设置静默：仅社区工作人员与"
            "街道人员可以，且限于其社区/区县",
            f"{staff_id} ({viewer.staff.role}) may not silence alerts of {target}: only "
            "COMMUNITY_STAFF and STREET_OFFICE may, in their own community / county",
        )
    return viewer, target


def _show(silence: Any, now_ms: int, timezone: str) -> str:
    zone = ZoneInfo(timezone)

    def local(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")

    return (
        f"{silence.silence_id}  {silence.state(now_ms):7}  {silence.community_id}  "
        f"{silence.matchers()}  {local(silence.starts_at)} → {local(silence.ends_at)}  "
        f"by {silence.created_by}"
        + (f" (ended by {silence.updated_by})" if silence.updated_by != silence.created_by else "")
        + f"  «{silence.comment}»"
    )


def _write(settings: Settings, silence: Any) -> None:
    from fangxian.ingest.produce import RecordProducer

    producer = RecordProducer(settings, acks="all", linger_ms=0)
    try:
        producer.send("Silence", silence.to_record())
    finally:
        producer.close()  # flushes: the broker has it (acks=all) when this returns


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.core.codes import credit_code_format_ok
    from sinks.reports.sqltime import parse_local_time
    from streams.dispatch.silences import (
        SilenceInvalid,
        check_request,
        new_silence,
        split_values,
    )

    asked = {
        "gate_ids": split_values(args.gate),
        "device_ids": split_values(args.device),
        "alert_types": split_values(args.type),
        "duration_s": args.duration,
        "comment": args.reason,
    }
    # the values are checked before any service is contacted
    if args.community and not credit_code_format_ok(args.community):
        print(f"✗ 社区代码无效 not a community code: {args.community}", file=sys.stderr)
        return USAGE
    try:
        check_request(**asked)
        starts_at = parse_local_time(args.start, settings.default_timezone) if args.start else None
        if starts_at is not None and starts_at < _now_ms() - 60_000:
            raise SilenceInvalid("开始时间不能早于现在", "a silence cannot start in the past")
    except SilenceInvalid as err:
        print(f"✗ {err.message_zh}\n✗ {err.message_en}", file=sys.stderr)
        return USAGE
    viewer, target = _check_staff(settings, args.staff_id, args.community)
    if viewer is None:
        assert isinstance(target, int)
        return target
    silence = new_silence(
        community_id=str(target),
        created_by=args.staff_id,
        now_ms=_now_ms(),
        via="cli",
        starts_at=starts_at,
        **asked,
    )
    details = {
        "what": "create",
        "silence_id": silence.silence_id,
        "matchers": silence.matchers()[:300],
        "ends_at": str(silence.ends_at),
        "via": "cli",
    }
    if not _audit(settings, args.staff_id, silence.community_id, details, denied=False):
        return PROBLEMS_FOUND
    _write(settings, silence)
    print(f"静默已设置 silence created: {_show(silence, _now_ms(), settings.default_timezone)}")
    print(silence.silence_id)
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    book = _silences(settings)
    now = _now_ms()
    silences = sorted(
        (
            s
            for s in book.silences.values()
            if (args.all or s.ends_at > now)
            and (not args.community or s.community_id == args.community)
        ),
        key=lambda s: (s.community_id, s.ends_at <= now, s.ends_at, s.silence_id),
    )
    if args.json:
        print(json.dumps([s.to_json(now) for s in silences], ensure_ascii=False, indent=1))
        return 0
    for silence in silences:
        print(_show(silence, now, settings.default_timezone))
    if not silences:
        print("无静默 no silences" + ("" if args.all else " in force (--all: ended ones too)"))
    return 0


def cmd_expire(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dispatch.silences import SilenceInvalid, expire

    book = _silences(settings)
    current = book.silences.get(args.silence_id)
    if current is None:
        return _refused(f"没有静默 {args.silence_id}", f"no silence {args.silence_id}")
    viewer, target = _check_staff(settings, args.staff_id, current.community_id)
    if viewer is None:
        assert isinstance(target, int)
        return target
    try:
        ended = expire(current, args.staff_id, _now_ms())
    except SilenceInvalid as err:
        return _refused(err.message_zh, err.message_en)
    details = {"what": "expire", "silence_id": ended.silence_id, "via": "cli"}
    if not _audit(settings, args.staff_id, ended.community_id, details, denied=False):
        return PROBLEMS_FOUND
    _write(settings, ended)
    print(f"静默已解除 silence expired: {_show(ended, _now_ms(), settings.default_timezone)}")
    return 0


def _duration(text: str) -> int:
    from streams.dispatch.silences import SilenceInvalid, parse_duration_s

    try:
        return parse_duration_s(text)
    except SilenceInvalid as err:
        raise argparse.ArgumentTypeError(f"{err.message_zh} / {err.message_en}") from err


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fangxian.cli import argtypes

    silence = sub.add_parser(
        "silence", help="预警静默 silence alerts by gate, device or type for a time"
    ).add_subparsers(dest="sub", required=True)

    add = silence.add_parser("add", help="silence the alerts that match, for a time, with a reason")
    add.add_argument("--as", dest="staff_id", required=True, help="staff id of who silences")
    add.add_argument("--community", help="community code (default: the staff member's)")
    add.add_argument("--gate", action="append", default=[], help="gate id (repeatable)")
    add.add_argument("--device", action="append", default=[], help="device id (repeatable)")
    add.add_argument(
        "--type", action="append", default=[], help="alert type, e.g. FEVER_RECHECK_MISSED"
    )
    add.add_argument(
        "--for", dest="duration", required=True, type=_duration, help="e.g. 30m, 4h, 3d"
    )
    add.add_argument("--reason", required=True, help="why, e.g. 东门测温枪送修")
    add.add_argument(
        "--start", type=argtypes.iso_time, help="start later (local ISO time; default now)"
    )
    add.set_defaults(func=cmd_add)

    listing = silence.add_parser("list", help="silences in force (pending and active)")
    listing.add_argument("--community", help="only this community")
    listing.add_argument("--all", action="store_true", help="ended ones too")
    listing.add_argument("--json", action="store_true", help="JSON instead of lines")
    listing.set_defaults(func=cmd_list)

    ending = silence.add_parser("expire", help="end a silence now")
    ending.add_argument("silence_id")
    ending.add_argument("--as", dest="staff_id", required=True, help="staff id of who ends it")
    ending.set_defaults(func=cmd_expire)
