"""``fangxian forget``: 删除个人数据, delete one subject's rows everywhere."""

from __future__ import annotations

import argparse

from fangxian.cli import argtypes
from fangxian.core.progress import Progress
from fangxian.core.settings import Settings


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from fangxian.core.privacy import mask_token
    from fangxian.reporting.audit import staff_entry
    from fangxian.reporting.forget import forget_subject
    from sinks import clickhouse_options, open_writer
    from sinks.audit import FORGET, write_audit

    writer = open_writer(
        settings.clickhouse_url,
        connect_timeout_s=settings.connect_timeout_s,
        **clickhouse_options(settings),
    )
    try:
        write_audit(  # before the deletion: no audit row, no deletion
            writer,
            staff_entry(
                settings, FORGET, subject=args.subject, details={"dry_run": str(args.dry_run)}
            ),
        )
        with Progress(
            f"删除 forget {mask_token(args.subject)}",
            unit="tables",
            interval_s=settings.progress_interval_s,
        ) as progress:
            result = forget_subject(writer, args.subject, dry_run=args.dry_run, progress=progress)
    finally:
        writer.close()
    verb = "would remove 将删除" if args.dry_run else "removed 已删除"
    print(f"对象 subject {mask_token(args.subject)}: {verb} {result.total_removed} rows 行")
    for table, n in result.removed.items():
        print(f"  {table}: {n}")
    for table, n in result.rebuilt.items():
        print(f"  {table}: {n} buckets rebuilt 汇总桶已重建")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    forget = sub.add_parser("forget", help="删除个人数据 delete one subject's rows everywhere")
    forget.add_argument("subject", type=argtypes.subject_token, help="subject / resident token")
    forget.add_argument("--dry-run", action="store_true", help="only count the rows")
    forget.set_defaults(func=cmd_forget)
