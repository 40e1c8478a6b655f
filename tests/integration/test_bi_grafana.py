"""The Grafana dashboards of infra/grafana/dashboards (Grafana itself cannot run here): the JSON
is a well-formed, provisioned dashboard model on the provisioned data sources, every metric a
Prometheus panel or alert rule names is one fangxian/core/metrics.py defines, and every
ClickHouse panel's SQL — with the ClickHouse plugin's macros and the community variable
expanded as Grafana would — runs on embedded ClickHouse over the hand-counted fixture day."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from fangxian.core.metrics import Metrics
from sinks import Writer, open_writer
from tests.integration.bi_fixture import (
    COMMUNITY_A,
    COUNTY_DONGCHENG,
    COUNTY_FUZHOU,
    DAY,
    load_bi_fixture,
    utc_ms,
)

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARDS = {
    p.stem: json.loads(p.read_text(encoding="utf-8"))
    for p in (GRAFANA / "dashboards").glob("*.json")
}
DATASOURCES = yaml.safe_load(
    (GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text(encoding="utf-8")
)["datasources"]
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
ALERT_RULES = ROOT / "infra" / "prometheus" / "alerts.yml"


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, p) for name, d in sorted(DASHBOARDS.items()) for p in d["panels"]]


def _clickhouse_panels() -> list[Any]:
    return [
        pytest.param(panel, id=panel["title"])
        for _, panel in _panels()
        if panel["datasource"]["type"] == CLICKHOUSE_PLUGIN
    ]


def test_the_two_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == {"pipeline-health", "community-overview"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_model_is_well_formed(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["title"] and re.search(r"[\u4e00-\u9fff]", dashboard["title"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    provisioned = {(d["type"], d["uid"]) for d in DATASOURCES}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert re.search(r"[\u4e00-\u9fff]", panel["title"]), panel["title"]
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            source = target["datasource"]
            assert (source["type"], source["uid"]) in provisioned, panel["title"]
        for target in panel["targets"]:
            assert target.get("expr") or target.get("rawSql"), panel["title"]


def test_grafana_provisions_the_folder_compose_mounts() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text(encoding="utf-8")
    )["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./infra/grafana/dashboards:{provider['options']['path']}:ro" in mounts


def _referenced_metrics() -> set[str]:
    exprs = [t["expr"] for _, p in _panels() for t in p["targets"] if "expr" in t]
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = set(re.findall(r"\bfangxian_[a-z_]+", "\n".join(exprs)))
    return {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names}


def test_every_metric_named_by_a_panel_or_rule_is_defined() -> None:
    registry = CollectorRegistry()
    Metrics.create(registry)
    defined = {metric.name for metric in registry.collect()}
    referenced = _referenced_metrics()
    assert len(referenced) >= 10
    assert referenced <= defined, referenced - defined


# --- ClickHouse panels on chdb -------------------------------------------------------------

FROM_S = utc_ms(0) // 1000
TO_S = utc_ms(23, 59) // 1000


def expand(sql: str, database: str, community: str) -> str:
    """What the ClickHouse plugin sends for the fixture day: its macros and ${community}."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        rf"\1 >= toDateTime({FROM_S}) AND \1 <= toDateTime({TO_S})",
        sql,
    )
    sql = re.sub(
        r"\$__dateFilter\((\w+)\)",
        rf"\1 >= toDate('{DAY.isoformat()}') AND \1 <= toDate('{DAY.isoformat()}')",
        sql,
    )
    sql = sql.replace("${community:singlequote}", f"'{community}'")
    sql = re.sub(r"\bFROM (bi_\w+)", rf"FROM {database}.\1", sql)
    assert "$" not in sql, f"a macro or variable the test does not expand: {sql}"
    return sql


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Writer]:
    writer = open_writer(f"chdb://{tmp_path_factory.mktemp('grafana') / 'chdb'}")
    try:
        load_bi_fixture(writer)
        yield writer
    finally:
        writer.close()


def _columns(writer: Writer, sql: str) -> list[str]:
    return [row[0] for row in writer.query(f"DESCRIBE ({sql})")]


@pytest.mark.chdb
@pytest.mark.parametrize("panel", _clickhouse_panels())
def test_clickhouse_panel_runs_and_returns_the_fixture_day(
    loaded: Writer, panel: dict[str, Any]
) -> None:
    (target,) = panel["targets"]
    all_rows = loaded.query(expand(target["rawSql"], loaded.database, "__all"))
    assert all_rows, panel["title"]
    if "${community" not in target["rawSql"]:
        return
    one = expand(target["rawSql"], loaded.database, COMMUNITY_A)
    rows = loaded.query(one)
    assert 0 < len(rows) <= len(all_rows)
    if "community_id" in (columns := _columns(loaded, one)):
        assert {row[columns.index("community_id")] for row in rows} == {COMMUNITY_A}


@pytest.mark.chdb
def test_community_variable_lists_the_communities(loaded: Writer) -> None:
    (variable,) = DASHBOARDS["community-overview"]["templating"]["list"]
    rows = loaded.query(expand(variable["query"], loaded.database, "__all"))
    assert COMMUNITY_A in {row[0] for row in rows} and len(rows) == 3


@pytest.mark.chdb
def test_county_rollup_panel_gives_the_hand_counted_figures(loaded: Writer) -> None:
    (panel,) = [p for _, p in _panels() if p["title"].startswith("区县汇总")]
    rows = loaded.query(expand(panel["targets"][0]["rawSql"], loaded.database, "__all"))
    assert rows == [(COUNTY_DONGCHENG, 1, 1, 0, 0, 0, 0), (COUNTY_FUZHOU, 2, 6, 1, 1, 1, 4)]
