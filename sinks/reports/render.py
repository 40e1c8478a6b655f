"""The daily report as CSV, JSON or a self-contained HTML page (inline SVG, no JS, no CDN).

Chinese labels first with the English beside them; column keys stay English so programs can
read the files. The report is aggregate: it holds no subject ids at all.
"""

from __future__ import annotations

import csv
import io
import json
from html import escape

from sinks.reports.daily import (
    DECISION_LABELS,
    FIGURES,
    SEVERITY_LABELS,
    SYMPTOM_LABELS,
    DailyReport,
)
from sinks.reports.on_duty import ON_DUTY_FIGURES

TITLE_ZH = "社区疫情信息报表"
TITLE_EN = "Community epidemic report"
SCOPE_LABELS = {"community": "社区 community", "county": "区县 county"}
CSV_HEADER = ("section", "key", "label_zh", "label_en", "value")


def rows(report: DailyReport) -> list[tuple[str, str, str, str, int]]:
    """Every figure as ``(section, key, label_zh, label_en, value)``."""
    out = [("figures", k, zh, en, report.figures[k]) for k, (zh, en) in FIGURES.items()]
    out += [
        ("symptoms", k, SYMPTOM_LABELS[k], k.lower().replace("_", " "), v)
        for k, v in report.symptoms.items()
    ]
    out += [
        (
            "alerts",
            f"{a.alert_type}:{a.severity}",
            SEVERITY_LABELS.get(a.severity, a.severity),
            f"{a.alert_type} {a.severity}",
            a.count,
        )
        for a in report.alerts
    ]
    out += [("decisions", k, DECISION_LABELS[k], k.lower(), v) for k, v in report.decisions.items()]
    out += [
        ("passes_by_hour", f"{h:02d}", f"{h:02d}时", f"hour {h:02d}", n)
        for h, n in enumerate(report.passes_by_hour)
    ]
    out += [
        ("on_duty", f"{f.community_id}:{key}", zh, en, getattr(f, key))
        for f in report.on_duty
        for key, zh, en in ON_DUTY_FIGURES
    ]
    return out


def render_csv(report: DailyReport) -> str:
    """Long format: a heading line, then one line per figure (``CSV_HEADER``)."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(CSV_HEADER)
    out.writerow(("report", report.scope.kind, TITLE_ZH, TITLE_EN, report.scope.code))
    out.writerow(("report", "date", "日期", "date", report.date.isoformat()))
    out.writerows(rows(report))
    return buffer.getvalue()


def render_json(report: DailyReport) -> str:
    data = {
        "title": f"{TITLE_ZH} {TITLE_EN}",
        **report.to_dict(),
        "labels": {k: f"{zh} {en}" for k, (zh, en) in FIGURES.items()},
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


def hourly_svg(passes_by_hour: list[int], *, width: int = 720, height: int = 200) -> str:
    """A bar chart of passes per local hour, as inline SVG."""
    top = max(passes_by_hour, default=0) or 1
    slot = width / len(passes_by_hour)
    plot = height - 30
    bars = []
    for hour, n in enumerate(passes_by_hour):
        h = plot * n / top
        x = hour * slot
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{plot - h + 10:.1f}" width="{slot - 4:.1f}" '
            f'height="{h:.1f}" fill="#c0392b">'
            f"<title>{hour:02d}时 hour {hour:02d}: {n}</title></rect>"
            f'<text x="{x + slot / 2:.1f}" y="{height - 5}" font-size="10" '
            f'text-anchor="middle">{hour:02d}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="通行人次按小时 passes by hour">'
        + "".join(bars)
        + "</svg>"
    )


def _table(caption: str, lines: list[tuple[str, str, int]]) -> str:
    body = "".join(
        f"<tr><td>{escape(zh)}</td><td>{escape(en)}</td><td class=n>{n}</td></tr>"
        for zh, en, n in lines
    )
    return (
        f"<table><caption>{escape(caption)}</caption>"
        "<tr><th>项目</th><th>item</th><th>数值 value</th></tr>"
        f"{body}</table>"
    )


def render_html(report: DailyReport) -> str:
    sections: dict[str, list[tuple[str, str, int]]] = {
        "figures": [],
        "symptoms": [],
        "alerts": [],
        "decisions": [],
        "on_duty": [],
    }
    captions = {
        "figures": "概况 summary",
        "symptoms": "症状 symptoms (人数 residents)",
        "alerts": "告警 alerts",
        "decisions": "通行判定 gate decisions",
        "on_duty": "预警处置反馈 alert acknowledgement",
    }
    for section, key, zh, en, value in rows(report):
        if section in sections:
            label_zh = f"{key} {zh}" if section in ("alerts", "on_duty") else zh
            sections[section].append((label_zh, en, value))
    scope = SCOPE_LABELS[report.scope.kind]
    tables = "".join(_table(captions[s], lines) for s, lines in sections.items())
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{TITLE_ZH} {escape(report.scope.code)} {report.date.isoformat()}</title>
<style>
body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #999;padding:.2em .6em}}td.n{{text-align:right}}
caption{{font-weight:bold;text-align:left}}
</style></head><body>
<h1>{TITLE_ZH} <small>{TITLE_EN}</small></h1>
<p>{scope}: {escape(report.scope.code)} · 日期 date: {report.date.isoformat()}
 · 时区 time zone: {escape(report.timezone)}</p>
<h2>通行人次（按小时）<small>passes by hour</small></h2>
{hourly_svg(report.passes_by_hour)}
{tables}
</body></html>
"""


RENDERERS = {"csv": render_csv, "json": render_json, "html": render_html}
