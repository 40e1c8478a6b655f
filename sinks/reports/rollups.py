"""The roll-up tables the reports read, and how to rebuild a few of their buckets.

The views' ``SELECT``s live in ``sinks/migrations/0003_report_rollups.sql`` only; this module
reads them back from there, so a bucket rebuilt here (after ``fangxian forget``) is computed
exactly as the view computes it on insert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from sinks.migrate import load_migrations, split_statements

ROLLUP_MIGRATION = "0003_report_rollups"

_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{database\}\.(?P<view>\w+) "
    r"TO \{database\}\.(?P<target>\w+) AS\s+(?P<select>SELECT\b.*)$",
    re.DOTALL,
)
_SOURCE = re.compile(r"\bFROM \{database\}\.(?P<source>\w+)")


@dataclass(frozen=True)
class Rollup:
    """A roll-up table fed by one view over one base table."""

    target: str
    source: str
    subject_column: str  # the source column that names a person
    bucket: str  # the time bucket column (also the view's alias for it)
    select: str  # the view's SELECT, with the ``{database}`` placeholder

    def select_where(self, condition: str, database: str) -> str:
        """The view's ``SELECT`` restricted to source rows matching ``condition``."""
        sql = self.select.replace("\nGROUP BY ", f"\nWHERE {condition}\nGROUP BY ", 1)
        return sql.replace("{database}", database)


# Which source column names the subject, and the time bucket, per roll-up table.
SUBJECT_COLUMNS = {
    "gate_minute": ("subject_id", "minute"),
    "alert_minute": ("subject_id", "minute"),
    "decision_minute": ("subject_id", "minute"),
    "health_day": ("resident_id", "report_date"),
}


@cache
def rollups() -> tuple[Rollup, ...]:
    """Every roll-up, as declared by the migration's views."""
    (migration,) = [m for m in load_migrations() if m.name == ROLLUP_MIGRATION]
    found: list[Rollup] = []
    for statement in split_statements(migration.sql):
        view = _VIEW.match(statement)
        if view is None:
            continue
        source = _SOURCE.search(view["select"])
        if source is None or "\nGROUP BY " not in view["select"]:
            raise ValueError(f"view {view['view']} needs FROM {{database}}.t and GROUP BY")
        subject_column, bucket = SUBJECT_COLUMNS[view["target"]]
        found.append(
            Rollup(view["target"], source["source"], subject_column, bucket, view["select"])
        )
    if {r.target for r in found} != set(SUBJECT_COLUMNS):
        raise ValueError(f"{ROLLUP_MIGRATION}: expected views for {sorted(SUBJECT_COLUMNS)}")
    return tuple(found)
