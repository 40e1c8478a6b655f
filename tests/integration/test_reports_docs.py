"""Every SQL block of docs/queries.md runs on chdb over the scripted day and gives the figures
the report gives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_reports_scenario import (
    COMMUNITY_A,
    RETENTION_DAYS,
    SUBJECT,
    WINDOW_MS,
    build_scenario,
    expected_contacts,
    expected_report,
    write_scenario,
)

from fangxian.core.privacy import mask_token
from sinks import Writer, migrate, open_writer

QUERIES_MD = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
BLOCK = re.compile(r"^### (?P<title>.+?)\n.*?```sql\n(?P<sql>.*?)```", re.DOTALL | re.MULTILINE)


def sql_blocks() -> dict[str, str]:
    return {m["title"]: m["sql"] for m in BLOCK.finditer(QUERIES_MD.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Writer]:
    opened = open_writer(f"chdb://{tmp_path_factory.mktemp('docs') / 'chdb'}")
    try:
        migrate(opened, retention_days=RETENTION_DAYS)
        write_scenario(opened, build_scenario())
        yield opened
    finally:
        opened.close()


def test_the_docs_have_the_promised_examples() -> None:
    assert len(sql_blocks()) == 6
    assert QUERIES_MD.read_text(encoding="utf-8").count("```sql") == 6


@pytest.mark.chdb
@pytest.mark.parametrize("title", sorted(sql_blocks()))
def test_every_documented_query_runs_and_returns_rows(loaded: Writer, title: str) -> None:
    assert loaded.query(sql_blocks()[title]), title


@pytest.mark.chdb
def test_the_documented_daily_query_gives_the_report_figures(loaded: Writer) -> None:
    (title,) = [t for t in sql_blocks() if t.startswith("社区日报")]
    ((entries, exits, residents_out, visitors, vehicles),) = loaded.query(sql_blocks()[title])
    figures = expected_report(build_scenario(), lambda c: c == COMMUNITY_A)["figures"]
    assert (entries, exits, residents_out, visitors, vehicles) == tuple(
        figures[k] for k in ("entries", "exits", "residents_out", "visitors", "vehicles")
    )


@pytest.mark.chdb
def test_the_documented_contacts_query_finds_the_contacts_masked(loaded: Writer) -> None:
    (title,) = [t for t in sql_blocks() if t.startswith("密接查询")]
    rows = loaded.query(sql_blocks()[title])
    expected = expected_contacts(build_scenario(), SUBJECT, WINDOW_MS)
    assert sorted(r[0] for r in rows) == sorted(mask_token(t) for t, _ in expected)
