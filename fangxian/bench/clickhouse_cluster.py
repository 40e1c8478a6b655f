"""The sink's inserts into a ClickHouse cluster, measured: ``fangxian bench --clickhouse-cluster``
(or ``python -m fangxian.bench.clickhouse_cluster``). Not a test: it asserts no figure.

One writer process (this one, as one sink process is) inserts the same simulated rows — gate
scans, temperature readings, health reports and one decision per scan, the sink's five busy
tables — in the sink's way: one columnar insert per table per flush of ``flush_rows`` rows
(the sink's ``sink_batch_rows``, 50,000), each flush stamped with one ``ingested_at``, into

- ``single``: one Debian ClickHouse 18.16 server (what ``docs/benchmark.md``'s sink figure is);
- ``distributed``: a 2 shards × 2 replicas cluster with ZooKeeper, through the Distributed
  tables (``insert_distributed_sync=1``: the node that receives a block splits it by
  ``cityHash64(community_id)`` and forwards each part to a replica of its shard);
- ``shards``: the same cluster, straight into each shard's local replicated table by the same
  key (``FANGXIAN_CLICKHOUSE_INSERT=shards``, ``sinks.cluster.ShardedWriter``);
- ``chdb``: the current ClickHouse engine in-process (chdb), for the disk figures of a current
  server (18.16 has no LowCardinality and the 18.16 columns are split, docs/scale.md).

Per target: rows/s of the inserts (wall clock, from the first insert to the last answer), the
writer's own CPU per row (``time.process_time``: encoding and, per shard, the split), and the
servers' CPU per row (their processes' utime + stime from ``/proc``): all of it on one machine,
so the cluster's four servers and ZooKeeper share its cores with the writer. Rounds alternate
the targets; each figure is its best round (all rounds are kept). Every round checks that each
table holds exactly the rows sent (``uniqExact``, replicas synced). On one server and chdb a
round also merges every table (``OPTIMIZE … FINAL``, the state a day's partition reaches) and
reads the bytes on disk per row of each table, roll-ups included: the disk plan's figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fangxian.bench.stats import rate
from fangxian.bench.workload import build_simulator, simulated_events
from infra.clickhouse_cluster import CLUSTER, ClickHouseCluster
from infra.clickhouse_server import ClickHouseServer
from schemas.topics import EVENT_TABLES
from sinks import Connection, migrate, open_writer
from sinks.cluster import sync_replicas
from sinks.rows import INGESTED_AT

log = logging.getLogger(__name__)

TARGETS = ("single", "distributed", "shards", "chdb")
FLUSH_ROWS = 50_000
RETENTION_DAYS = 3650
_TICKS = os.sysconf("SC_CLK_TCK")

Rows = dict[str, list[dict[str, Any]]]


def workload(events: int, communities: int, residents: int, seed: int) -> Rows:
    """Rows per table as the sink would write them: the simulated events and a decision per
    gate scan."""
    sim = build_simulator(communities=communities, residents=residents, seed=seed)
    rows: Rows = {}
    for name, event in simulated_events(sim, events):
        rows.setdefault(EVENT_TABLES[name], []).append(event)
    rows["gate_decisions"] = [
        {
            "event_id": s["event_id"],
            "community_id": s["community_id"],
            "gate_id": s["gate_id"],
            "subject_id": s["subject_id"],
            "decision": "ALLOW",
            "reasons": [],
            "decided_at": s["event_time"] + 40,
        }
        for s in rows.get("gate_scans", [])
    ]
    return rows


def flushes(rows: Rows, flush_rows: int) -> Iterator[Rows]:
    """The rows in the order they arrived, cut into flushes of ``flush_rows`` rows in all, each
    as the sink's checkpoint holds it (rows per table)."""
    tables = sorted(rows)
    cursors = dict.fromkeys(tables, 0)
    total = sum(len(r) for r in rows.values())
    taken = 0
    while taken < total:
        flush: Rows = {}
        budget = flush_rows
        for table in tables:  # each table's share of a flush, as in the mixed stream
            share = max(1, round(flush_rows * len(rows[table]) / total))
            start = cursors[table]
            part = rows[table][start : start + min(share, budget)]
            if part:
                flush[table] = part
                cursors[table] += len(part)
                budget -= len(part)
                taken += len(part)
        if not flush:
            break
        yield flush


def _server_cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def insert_all(writer: Connection, rows: Rows, flush_rows: int, pids: list[int]) -> dict[str, Any]:
    """Every flush, one insert per table, as the sink does; the figures of one round."""
    count = sum(len(r) for r in rows.values())
    cpu, server_cpu = time.process_time(), _server_cpu_s(pids)
    began = time.perf_counter()
    inserts = 0
    for n, flush in enumerate(flushes(rows, flush_rows)):
        stamp = 1_700_000_000_000 + n  # one ingested_at per flush, as the sink stamps it
        for table, table_rows in flush.items():
            writer.write(table, [{**r, INGESTED_AT: stamp} for r in table_rows])
            inserts += 1
    seconds = time.perf_counter() - began
    client_cpu = time.process_time() - cpu
    servers = _server_cpu_s(pids) - server_cpu
    return {
        "rows": count,
        "inserts": inserts,
        "seconds": round(seconds, 3),
        "rows_per_s": rate(count, seconds),
        "writer_cpu_us_per_row": round(client_cpu / count * 1e6, 2),
        "servers_cpu_us_per_row": round(servers / count * 1e6, 2),
    }


def disk_per_row(writer: Connection) -> dict[str, Any]:
    """Merge every table, then bytes on disk (one replica) per table and per source row."""
    db = writer.database
    tables = [
        str(t)
        for (t,) in writer.query(
            "SELECT name FROM system.tables WHERE database = %(db)s AND engine LIKE '%%MergeTree'",
            {"db": db},
        )
    ]
    for table in tables:
        writer.execute(f"OPTIMIZE TABLE {db}.{table} FINAL")
    found = writer.query(
        "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes)"
        " FROM system.parts WHERE database = %(db)s AND active GROUP BY table ORDER BY table",
        {"db": db},
    )
    return {
        str(t): {"rows": int(r), "bytes_on_disk": int(b), "uncompressed_bytes": int(u)}
        for t, r, b, u in found
    }


def _check(writer: Connection, rows: Rows, cluster: bool) -> None:
    if cluster:
        sync_replicas(writer)
    for table, table_rows in rows.items():
        ((n,),) = writer.query(f"SELECT uniqExact(event_id) FROM {writer.database}.{table}")
        if int(n) != len(table_rows):
            raise RuntimeError(f"{table}: {n} rows stored, {len(table_rows)} sent")


def run(
    *,
    events: int = 200_000,
    communities: int = 20,
    residents: int = 1000,
    seed: int = 7,
    rounds: int = 2,
    flush_rows: int = FLUSH_ROWS,
    out_dir: Path = Path("bench-results"),
    targets: tuple[str, ...] = TARGETS,
) -> tuple[dict[str, Any], Path]:
    """Start the servers, run ``rounds`` rounds over ``targets``, write the JSON; stop all."""
    started = time.monotonic()
    rows = workload(events, communities, residents, seed)
    log.info(
        "workload: %s rows in %.1f s",
        {t: len(r) for t, r in rows.items()},
        time.monotonic() - started,
    )
    results: dict[str, Any] = {
        "meta": {
            "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "events": events,
            "rows": {t: len(r) for t, r in rows.items()},
            "flush_rows": flush_rows,
            "cluster": "2 shards x 2 replicas, ZooKeeper, one machine",
        },
        "rounds": {t: [] for t in targets},
    }
    with ExitStack() as stack:
        single = stack.enter_context(ClickHouseServer()) if "single" in targets else None
        cluster = (
            stack.enter_context(ClickHouseCluster(shards=2, replicas=2))
            if {"distributed", "shards"} & set(targets)
            else None
        )
        server = single or cluster
        results["meta"]["clickhouse"] = server.version if server is not None else ""

        def opener(target: str, database: str) -> tuple[Connection, list[int]]:
            if target == "chdb":
                scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                return open_writer(f"chdb://{scratch}?database={database}"), []  # in this process
            if target == "single":
                assert single is not None and single.pid is not None
                return open_writer(single.url_for(database)), [single.pid]
            assert cluster is not None
            pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
            writer = open_writer(cluster.url_for(database), cluster=CLUSTER, insert=target)
            return writer, pids

        for round_no in range(rounds):
            order = targets if round_no % 2 == 0 else tuple(reversed(targets))
            for target in order:
                figures = _round(opener, target, f"bench_{target}_{round_no}", rows, flush_rows)
                log.info("round %d %s: %s", round_no + 1, target, figures)
                results["rounds"][target].append(figures)
    results["best"] = {
        t: max(rs, key=lambda r: r["rows_per_s"]) for t, rs in results["rounds"].items() if rs
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"clickhouse-cluster-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return results, path


def _round(
    opener: Callable[[str, str], tuple[Connection, list[int]]],
    target: str,
    database: str,
    rows: Rows,
    flush_rows: int,
) -> dict[str, Any]:
    writer, pids = opener(target, database)
    try:
        migrate(writer, retention_days=RETENTION_DAYS)
        figures = insert_all(writer, rows, flush_rows, pids)
        _check(writer, rows, cluster=target in ("distributed", "shards"))
        if target in ("single", "chdb"):
            figures["disk"] = disk_per_row(writer)
        return figures
    finally:
        writer.close()


def summary_table(results: dict[str, Any]) -> str:
    header = ("target", "rows/s", "writer µs/row", "servers µs/row", "inserts")
    lines = ["{:<12} {:>10} {:>14} {:>15} {:>8}".format(*header)]
    for target, best in results["best"].items():
        lines.append(
            f"{target:<12} {best['rows_per_s']:>10,.0f} {best['writer_cpu_us_per_row']:>14}"
            f" {best['servers_cpu_us_per_row']:>15} {best['inserts']:>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out-dir", default="bench-results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    results, path = run(events=args.events, rounds=args.rounds, out_dir=Path(args.out_dir))
    print(summary_table(results))
    print(f"results 结果: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
