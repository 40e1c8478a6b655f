"""Further CLI commands, registered on the ``fangxian`` parser: ``report``, ``contacts``,
``forget``."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

from fangxian.core.settings import Settings

log = logging.getLogger(__name__)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.reporting.daily import Scope, build_report
    from fangxian.reporting.render import RENDERERS
    from sinks import open_writer

    scope = Scope("county", args.county) if args.county else Scope("community", args.community)
    timezone = args.timezone or settings.default_timezone
    writer = open_writer(settings.clickhouse_url)
    try:
        report = build_report(writer, scope, dt.date.fromisoformat(args.date), timezone)
    finally:
        writer.close()
    text = RENDERERS[args.format](report)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"report written 报表已写入: {args.out}")
    else:
        print(text)
    if args.publish:
        from fangxian.reporting.publish import kafka_producer, publish_report

        producer = kafka_producer(settings.kafka_bootstrap)
        try:
            publish_report(report, producer, settings.topics.reports_daily)
        finally:
            producer.close()
        print(f"report published 报表已上报: {settings.topics.reports_daily}")
    return 0


def cmd_contacts(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.contacts import find_contacts, render_json, render_table
    from fangxian.reporting.sqltime import parse_duration_s, parse_local_time
    from sinks import open_writer

    timezone = args.timezone or settings.default_timezone
    start = parse_local_time(args.start, timezone)
    end = parse_local_time(args.end, timezone)
    window_ms = parse_duration_s(args.window) * 1000
    writer = open_writer(settings.clickhouse_url)
    try:
        result = find_contacts(writer, args.subject, start, end, window_ms)
    finally:
        writer.close()
    render = render_json if args.format == "json" else render_table
    print(render(result, timezone))
    return 0


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.forget import forget_subject
    from fangxian.identity import mask_token
    from sinks import open_writer

    writer = open_writer(settings.clickhouse_url)
    try:
        result = forget_subject(writer, args.subject, dry_run=args.dry_run)
    finally:
        writer.close()
    verb = "would remove 将删除" if args.dry_run else "removed 已删除"
    print(f"对象 subject {mask_token(args.subject)}: {verb} {result.total_removed} rows 行")
    for table, n in result.removed.items():
        print(f"  {table}: {n}")
    for table, n in result.rebuilt.items():
        print(f"  {table}: {n} buckets rebuilt 汇总桶已重建")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``report``, ``contacts`` and ``forget`` to the ``fangxian`` parser."""
    report = sub.add_parser("report", help="社区疫情信息报表 daily community epidemic report")
    whose = report.add_mutually_exclusive_group(required=True)
    whose.add_argument("--community", help="community credit code (18 chars)")
    whose.add_argument("--county", help="county code (GB/T 2260, 6 digits): all its communities")
    report.add_argument("--date", required=True, help="local date, YYYY-MM-DD")
    report.add_argument("--format", choices=("csv", "json", "html"), default="json")
    report.add_argument("--out", help="write to this file instead of stdout")
    report.add_argument("--timezone", help="default: FANGXIAN_DEFAULT_TIMEZONE (Asia/Shanghai)")
    report.add_argument("--publish", action="store_true", help="also produce to reports.daily")
    report.set_defaults(func=cmd_report)

    contacts = sub.add_parser(
        "contacts", help="密接查询 who passed the same gates around a subject"
    )
    contacts.add_argument("subject", help="subject token")
    contacts.add_argument("--from", dest="start", required=True, help="ISO time (local if naive)")
    contacts.add_argument("--to", dest="end", required=True, help="ISO time (local if naive)")
    contacts.add_argument("--window", default="10m", help="± window, e.g. 10m, 90s, 1h")
    contacts.add_argument("--format", choices=("table", "json"), default="table")
    contacts.add_argument("--timezone", help="default: FANGXIAN_DEFAULT_TIMEZONE")
    contacts.set_defaults(func=cmd_contacts)

    forget = sub.add_parser("forget", help="删除个人数据 delete one subject's rows everywhere")
    forget.add_argument("subject", help="subject / resident token")
    forget.add_argument("--dry-run", action="store_true", help="only count the rows")
    forget.set_defaults(func=cmd_forget)
