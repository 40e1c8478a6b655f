"""Apache Superset, as `make bi` installs it (its own cached virtualenv), imports the dashboard
shipped in infra/superset/dashboard and runs every chart's query through its own chart-data
layer, connected as bi_reader over clickhouse+native:// to the Debian 18.16 server holding the
hand-counted fixture day. One Superset process per session (Superset starts slowly)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.clickhouse_server import BI_READER, ClickHouseServer
from infra.ports import LOOPBACK
from sinks import open_writer
from tests.conftest import unique_name
from tests.integration.bi_fixture import (
    COMMUNITY_A,
    COMMUNITY_B,
    SUBJECT,
    bi_rows,
    load_bi_fixture,
)

ROOT = Path(__file__).resolve().parents[2]
SUPERSET_DIR = ROOT / "infra" / "superset"
BUNDLE = SUPERSET_DIR / "dashboard"
SUPERSET_TIMEOUT_S = 600  # first start on a slow, shared machine; about 20 s on a quiet one

Chart = dict[str, Any]


def superset_python() -> Path:
    """The Superset virtualenv's interpreter (installed by `make test-deps`; cached)."""
    done = subprocess.run(
        ["bash", str(SUPERSET_DIR / "install.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return Path(done.stdout.strip().splitlines()[-1]) / "bin" / "python"


@pytest.fixture(scope="module")
def charts(
    clickhouse_server: ClickHouseServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Chart]]:
    database = unique_name("bi_")
    writer = open_writer(clickhouse_server.url_for(database))
    try:
        load_bi_fixture(writer)
    finally:
        writer.close()
    home = tmp_path_factory.mktemp("superset")
    url = f"clickhouse+native://{BI_READER}@{LOOPBACK}:{clickhouse_server.tcp_port}/{database}"
    started = time.monotonic()
    done = subprocess.run(
        [str(superset_python()), str(SUPERSET_DIR / "superset_bi.py"), "charts", "--home", home],
        env={**os.environ, "FANGXIAN_BI_CLICKHOUSE_URL": url},
        capture_output=True,
        text=True,
        timeout=SUPERSET_TIMEOUT_S,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-5000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    print(f"Superset: {len(results)} charts in {elapsed:.1f} s")
    yield {result["chart"]: result for result in results}
    client = clickhouse_server.client()
    try:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.disconnect()


def _dashboard_chart_uuids() -> set[str]:
    (dashboard,) = (BUNDLE / "dashboards").glob("*.yaml")
    position = yaml.safe_load(dashboard.read_text(encoding="utf-8"))["position"]
    return {
        v["meta"]["uuid"]
        for v in position.values()
        if isinstance(v, dict) and v.get("type") == "CHART"
    }


def test_every_chart_of_the_dashboard_ran_without_error(charts: dict[str, Chart]) -> None:
    files = {
        p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in (BUNDLE / "charts").glob("*.yaml")
    }
    assert {spec["uuid"] for spec in files.values()} == _dashboard_chart_uuids()
    assert set(charts) == set(files)
    for name, chart in charts.items():
        assert chart["error"] is None, (name, chart["error"])
        assert chart["rows"] > 0, name
        assert "FROM bi_" in chart["sql"], name  # Superset's own SQL, over the BI views


def _rows(chart: Chart, *keys: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(row[k] for k in keys) for row in chart["data"])


@pytest.mark.parametrize(
    ("chart", "keys", "expected"),
    [
        pytest.param(
            "passes_by_hour",
            ("hour_utc", "direction", "passes"),
            [
                ("2020-02-15 02:00:00", "IN", 6),
                ("2020-02-15 02:00:00", "OUT", 1),
                ("2020-02-15 03:00:00", "IN", 1),
            ],
            id="passes by hour: the redelivered pass counts once",
        ),
        pytest.param(
            "decisions_by_reason",
            ("reason", "decisions"),
            [("FEVER_RECHECK", 1), ("HEALTH_CODE_RED", 2), ("NONE", 5), ("QUARANTINE_BREACH", 1)],
            id="decisions by reason: one DENY with two reasons counts under both",
        ),
        pytest.param(
            "fever_breach_by_hour",
            ("alert_type", "alerts"),
            [("FEVER_CONFIRMED", 1), ("FEVER_RECHECK", 1), ("QUARANTINE_BREACH", 1)],
            id="fever and breach alerts by hour: the overdue alert is left out",
        ),
        pytest.param(
            "fever_breach_list",
            ("alert_type", "subject_masked"),
            [
                ("FEVER_CONFIRMED", "0002****0002"),
                ("FEVER_RECHECK", "0006****0006"),
                ("QUARANTINE_BREACH", "0003****0003"),
            ],
            id="fever and breach alert list: one row per alert, subjects masked",
        ),
        pytest.param(
            "overdue_reports",
            ("community_id", "reports_received", "reports_overdue"),
            [(COMMUNITY_A, 2, 1), (COMMUNITY_B, 1, 0)],
            id="health reports received and overdue per community",
        ),
        pytest.param(
            "time_to_acknowledge",
            ("alert_type", "acknowledged", "mean_seconds_to_acknowledge"),
            [("FEVER_CONFIRMED", 1, 90), ("QUARANTINE_BREACH", 1, 240)],
            id="time to acknowledge: the first acknowledgement counts, once",
        ),
        pytest.param(
            "county_rollup",
            ("county_code", "communities", "entries", "exits", "fevers_confirmed", "alerts"),
            [("110105", 1, 1, 0, 0, 0), ("350100", 2, 6, 1, 1, 4)],
            id="county roll-up by GB 32100 characters 3-8",
        ),
    ],
)
def test_chart_gives_the_hand_counted_figures(
    charts: dict[str, Chart], chart: str, keys: tuple[str, ...], expected: list[tuple[Any, ...]]
) -> None:
    assert _rows(charts[chart], *keys) == expected


def test_no_chart_shows_a_raw_subject_token(charts: dict[str, Chart]) -> None:
    shown = json.dumps(charts)
    tokens = {row["subject_id"] for row in bi_rows()["alerts"] if row["subject_id"]}
    assert SUBJECT in tokens
    assert not [token for token in tokens if token in shown]
