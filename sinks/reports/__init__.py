"""Reporting over the ClickHouse tables: the daily community epidemic report (社区疫情信息报表),
its county roll-up, and the roll-up tables (``sinks/migrations/0003_report_rollups.sql``) it
reads."""

from sinks.reports.daily import DailyReport, Scope, build_report
from sinks.reports.render import render_csv, render_html, render_json

__all__ = [
    "DailyReport",
    "Scope",
    "build_report",
    "render_csv",
    "render_html",
    "render_json",
]
