"""``fangxian contacts``: 密接查询, who passed the same gates around a subject."""

from __future__ import annotations

import argparse

from fangxian.cli import argtypes
from fangxian.core.settings import Settings


def cmd_contacts(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.reporting.audit import staff_entry
    from fangxian.reporting.contacts import find_contacts, render_json, render_table
    from sinks import clickhouse_options, open_writer
    from sinks.audit import CONTACTS_QUERY, write_audit
    from sinks.reports.sqltime import parse_duration_s, parse_local_time

    timezone = args.timezone or settings.default_timezone
    start = parse_local_time(args.start, timezone)
    end = parse_local_time(args.end, timezone)
    window_ms = parse_duration_s(args.window) * 1000
    writer = open_writer(
        settings.clickhouse_url,
        connect_timeout_s=settings.connect_timeout_s,
        **clickhouse_options(settings),
    )
    try:
        # audited before it runs: no audit row, no query (fail closed)
        write_audit(
            writer,
            staff_entry(
                settings,
                CONTACTS_QUERY,
                subject=args.subject,
                details={"from": args.start, "to": args.end, "window": args.window},
            ),
        )
        result = find_contacts(writer, args.subject, start, end, window_ms)
    finally:
        writer.close()
    render = render_json if args.format == "json" else render_table
    print(render(result, timezone))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    contacts = sub.add_parser(
        "contacts", help="密接查询 who passed the same gates around a subject"
    )
    contacts.add_argument("subject", help="subject token")
    contacts.add_argument(
        "--from",
        dest="start",
        required=True,
        type=argtypes.iso_time,
        help="ISO time (local if naive)",
    )
    contacts.add_argument(
        "--to", dest="end", required=True, type=argtypes.iso_time, help="ISO time (local if naive)"
    )
    contacts.add_argument(
        "--window", default="10m", type=argtypes.duration, help="± window, e.g. 10m, 90s, 1h"
    )
    contacts.add_argument("--format", choices=("table", "json"), default="table")
    contacts.add_argument(
        "--timezone", type=argtypes.timezone, help="default: FANGXIAN_DEFAULT_TIMEZONE"
    )
    contacts.set_defaults(func=cmd_contacts)
