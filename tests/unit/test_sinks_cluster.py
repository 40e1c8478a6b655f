"""Cluster mode of the migrations and the per-shard routing (sinks/cluster.py), without a
server: every migration statement gets its cluster form, and the forms are valid ClickHouse
(parsed by chdb's current parser) and valid for 18.16 after the legacy rewrite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.cluster import (
    ClusterError,
    Replica,
    Shard,
    adapt_for_cluster,
    replicated_everywhere,
    shard_key_value,
    shard_slots,
    sharding_key,
)
from sinks.legacy import adapt_for_legacy
from sinks.migrate import BOOKKEEPING_DDL, load_migrations, render, split_statements

OLD, NEW = (18, 16, 1), (25, 8, 1)


def _statements() -> list[str]:
    return [
        render(statement, database="fx", retention_days=90)
        for migration in load_migrations()
        for statement in split_statements(migration.sql)
    ]


def _on_cluster(statement: str) -> list[str]:
    return adapt_for_cluster(statement, cluster="prov", database="fx")


def test_a_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    (scans,) = [
        s for s in _statements() if s.startswith("CREATE TABLE IF NOT EXISTS fx.gate_scans\n")
    ]
    local, distributed = _on_cluster(scans)
    assert local.startswith("CREATE TABLE IF NOT EXISTS fx.gate_scans_local ON CLUSTER prov\n(")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fx/gate_scans_local',"
        " '{replica}')" in local
    )
    # what the single server keeps stays: partitions, sorting key, TTL; the dedup window is the
    # replicated one
    for line in (
        "PARTITION BY toYYYYMMDD(event_time)",
        "TTL toDateTime(event_time) + INTERVAL 90 DAY",
    ):
        assert line in local
    assert "SETTINGS replicated_deduplication_window = 1000" in local
    assert "non_replicated" not in local
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS fx.gate_scans ON CLUSTER prov AS fx.gate_scans_local\n"
        "ENGINE = Distributed(prov, fx, gate_scans_local, cityHash64(community_id))"
    )


def test_tables_without_a_community_are_sharded_by_their_id() -> None:
    keys = {}
    for statement in _statements():
        if statement.startswith("CREATE TABLE"):
            name = statement.split("\n")[0].split(".")[1]
            keys[name] = re.search(r"cityHash64\((\w+)\)\)$", _on_cluster(statement)[1])[1]  # type: ignore[index]
    assert keys.pop("dead_letters") == "dead_letter_id"
    assert keys.pop("audit_log") == "audit_id"
    assert set(keys.values()) == {"community_id"}  # every other table, roll-ups included


def test_views_read_local_tables_and_bi_views_the_distributed_ones() -> None:
    statements = _statements()
    (mv,) = [s for s in statements if "fx.gate_minute_mv " in s]
    (cluster_mv,) = _on_cluster(mv)
    assert cluster_mv.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS fx.gate_minute_mv ON CLUSTER prov"
        " TO fx.gate_minute_local AS"
    )
    assert "FROM fx.gate_scans_local\n" in cluster_mv
    (bi,) = [s for s in statements if "fx.bi_county_hourly\n" in s]
    (cluster_bi,) = _on_cluster(bi)
    assert cluster_bi.startswith("CREATE VIEW IF NOT EXISTS fx.bi_county_hourly ON CLUSTER prov\n")
    assert "FROM fx.gate_minute\n" in cluster_bi and "_local" not in cluster_bi
    (backfill,) = [s for s in statements if s.startswith("INSERT INTO fx.gate_minute\n")]
    assert _on_cluster(backfill) == [backfill]  # Distributed to Distributed


def test_column_alters_go_to_both_tables_and_anything_unknown_is_refused() -> None:
    assert _on_cluster("ALTER TABLE fx.alerts ADD COLUMN note String DEFAULT ''") == [
        "ALTER TABLE fx.alerts_local ON CLUSTER prov ADD COLUMN note String DEFAULT ''",
        "ALTER TABLE fx.alerts ON CLUSTER prov ADD COLUMN note String DEFAULT ''",
    ]
    for statement in ("DROP TABLE fx.alerts", "ALTER TABLE fx.alerts DELETE WHERE 1"):
        with pytest.raises(ClusterError):
            _on_cluster(statement)
    with pytest.raises(ValueError):
        adapt_for_cluster(_statements()[0], cluster="prov; DROP", database="fx")


def test_the_bookkeeping_is_one_replicated_table_on_every_node() -> None:
    ddl = replicated_everywhere(
        render(BOOKKEEPING_DDL, database="fx", retention_days=90), cluster="prov", database="fx"
    )
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS fx.schema_migrations ON CLUSTER prov\n")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/fx/schema_migrations'" in ddl


@pytest.mark.parametrize("statement", _statements(), ids=lambda s: s.split("\n")[0][:60])
def test_on_18_16_the_cluster_forms_keep_replication_and_lose_the_modern_rest(
    statement: str,
) -> None:
    for form in _on_cluster(statement):
        old = adapt_for_legacy(form, OLD)
        for modern in ("DateTime64", "TTL ", "LowCardinality", "Map(", "Bool", "non_replicated"):
            assert modern not in old
        if "MergeTree(" in form:
            assert "ENGINE = Replicated" in old and "'{replica}'" in old
        assert adapt_for_legacy(form, NEW) == form


@pytest.mark.chdb
def test_every_cluster_statement_parses_on_a_current_server() -> None:
    import chdb

    for statement in [*_statements(), BOOKKEEPING_DDL.replace("{database}", "fx")]:
        forms = (
            [replicated_everywhere(statement, cluster="prov", database="fx")]
            if "schema_migrations" in statement
            else _on_cluster(statement)
        )
        for form in forms:
            chdb.query(f"EXPLAIN AST {form}", "TSV")  # raises on a syntax error


def test_rows_go_to_the_shard_distributed_would_pick() -> None:
    def shard(number: int, weight: int) -> Shard:
        return Shard(number, weight, (Replica(number, 1, "h", 9000),))

    assert shard_slots([shard(1, 1), shard(2, 1)]) == [0, 1]
    assert shard_slots([shard(1, 2), shard(2, 1), shard(3, 0)]) == [0, 0, 1]
    with pytest.raises(ClusterError):
        shard_slots([shard(1, 0)])
    assert sharding_key("\n    event_id String,\n    community_id String") == (
        "cityHash64(community_id)"
    )


def test_by_county_a_county_shares_a_shard_and_python_reads_the_same_key() -> None:
    (scans,) = [
        s for s in _statements() if s.startswith("CREATE TABLE IF NOT EXISTS fx.gate_scans\n")
    ]
    _, distributed = adapt_for_cluster(scans, cluster="prov", database="fx", shard_by="county")
    assert distributed.endswith("cityHash64(substring(community_id, 3, 6)))")
    (letters,) = [s for s in _statements() if "fx.dead_letters\n" in s]
    assert adapt_for_cluster(letters, cluster="prov", database="fx", shard_by="county")[1].endswith(
        "cityHash64(dead_letter_id))"
    )
    assert shard_key_value("91350100MA0000001P", "county") == "350100"
    assert shard_key_value("91350100MA0000001P", "community") == "91350100MA0000001P"
    with pytest.raises(ValueError):
        adapt_for_cluster(scans, cluster="prov", database="fx", shard_by="street")


@pytest.mark.chdb
def test_the_settings_options_open_a_reader_and_a_writer(tmp_path: Path) -> None:
    from fangxian.core.settings import SettingError, Settings
    from sinks import clickhouse_options, open_reader, open_writer

    url = f"chdb://{tmp_path / 'db'}"
    options = clickhouse_options(Settings())
    assert options == {"cluster": "", "insert": "distributed", "shard_by": "community"}
    open_reader(url, **options).close()  # the console opens its reader this way
    cluster = clickhouse_options(Settings(clickhouse_cluster="prov"))
    with pytest.raises(SettingError, match="FANGXIAN_CLICKHOUSE_CLUSTER"):
        open_writer(url, **cluster)  # a cluster needs servers
    for bad, setting in (({"insert": "both"}, "INSERT"), ({"shard_by": "street"}, "SHARD_BY")):
        with pytest.raises(SettingError, match=f"FANGXIAN_CLICKHOUSE_{setting}"):
            open_writer("clickhouse://127.0.0.1:1/db", **{**cluster, **bad})
