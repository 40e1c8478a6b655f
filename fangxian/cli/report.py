"""``fangxian report``: 社区疫情信息报表, the daily community epidemic report (``sinks/reports/``),
to stdout or a file, optionally published to ``reports.daily``."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from fangxian.cli import argtypes
from fangxian.core.progress import Progress
from fangxian.core.settings import Settings


class _CountedQueries:
    """A ``Reader`` that counts its queries on a ``Progress`` (a county report is a few large
    queries over every community of the county)."""

    def __init__(self, reader: Any, progress: Progress) -> None:
        self._reader = reader
        self._progress = progress
        self.database = reader.database

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._reader.query(sql, params)
        self._progress.advance()
        return rows

    def server_version(self) -> tuple[int, ...]:
        version: tuple[int, ...] = self._reader.server_version()
        return version

    def close(self) -> None:
        self._reader.close()


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.reporting.audit import staff_entry
    from sinks import clickhouse_options, open_writer
    from sinks.audit import REPORT_EXPORT, write_audit
    from sinks.reports.daily import Scope, build_report
    from sinks.reports.render import RENDERERS

    scope = Scope("county", args.county) if args.county else Scope("community", args.community)
    timezone = args.timezone or settings.default_timezone
    writer = open_writer(
        settings.clickhouse_url,
        connect_timeout_s=settings.connect_timeout_s,
        **clickhouse_options(settings),
    )
    try:
        write_audit(
            writer,
            staff_entry(
                settings,
                REPORT_EXPORT,
                scope=f"{scope.kind}:{scope.code}",
                details={
                    "date": args.date,
                    "format": args.format,
                    "out": args.out or "stdout",
                    "publish": str(args.publish),
                },
            ),
        )
        day = dt.date.fromisoformat(args.date)
        if args.county:
            with Progress(
                f"汇总 county report {args.county}",
                unit="queries",
                interval_s=settings.progress_interval_s,
            ) as progress:
                report = build_report(_CountedQueries(writer, progress), scope, day, timezone)
        else:
            report = build_report(writer, scope, day, timezone)
    finally:
        writer.close()
    text = RENDERERS[args.format](report)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"report written 报表已写入: {args.out}")
    else:
        print(text)
    if args.publish:
        from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

        from fangxian.core.kafka_security import kafka_client_kwargs
        from fangxian.core.timeouts import kafka_producer_timeouts
        from streams.daily_reports import kafka_producer, publish_report

        producer = kafka_producer(
            settings.kafka_bootstrap,
            **kafka_client_kwargs(settings),
            **kafka_producer_timeouts(settings),
        )
        try:
            publish_report(report, producer, settings.topics.reports_daily)
        except KafkaTimeoutError as err:
            if "metadata" not in str(err):
                raise
            raise UnknownTopicOrPartitionError(settings.topics.reports_daily) from err
        finally:
            producer.close()
        print(f"report published 报表已上报: {settings.topics.reports_daily}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="社区疫情信息报表 daily community epidemic report")
    whose = report.add_mutually_exclusive_group(required=True)
    whose.add_argument("--community", help="community credit code (18 chars)")
    whose.add_argument(
        "--county",
        type=argtypes.county,
        help="county code (GB/T 2260, 6 digits): all its communities",
    )
    report.add_argument(
        "--date", required=True, type=argtypes.iso_date, help="local date, YYYY-MM-DD"
    )
    report.add_argument("--format", choices=("csv", "json", "html"), default="json")
    report.add_argument("--out", help="write to this file instead of stdout")
    report.add_argument(
        "--timezone",
        type=argtypes.timezone,
        help="default: FANGXIAN_DEFAULT_TIMEZONE (Asia/Shanghai)",
    )
    report.add_argument("--publish", action="store_true", help="also produce to reports.daily")
    report.set_defaults(func=cmd_report)
