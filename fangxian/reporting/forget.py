"""``fangxian forget SUBJECT``: remove one subject's rows from every table.

Base tables: ``ALTER TABLE … DELETE WHERE <subject column> = X`` (synchronous on a current
server through ``mutations_sync = 2``; on 18.16, which lacks that setting, we wait on
``system.mutations``). Dead letters whose original bytes contain the token go too (Avro stores
strings as plain UTF-8). The roll-up tables hold sets of subject tokens, so every bucket the
subject touched is deleted and rebuilt from what is left in the base tables, with the view's own
``SELECT`` (``sinks.reports.rollups``).

On a cluster (``sinks/cluster.py``) each deletion is ``ALTER TABLE t_local … DELETE`` on one
replica of every shard — through replication every replica — and waits until every node that
answers has applied it; a node that is down applies it from ZooKeeper's log when it returns.
Counts and rebuilds go through the ``Distributed`` tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fangxian.core.progress import Progress
from sinks.base import Connection
from sinks.cluster import (
    cluster_of,
    execute_with_settings,
    local_name,
    mutation_ids,
    on_each_shard,
    wait_for_cluster_mutation,
)
from sinks.errors import SinkError
from sinks.reports.rollups import Rollup, rollups

log = logging.getLogger(__name__)

SUBJECT_TABLES: dict[str, str] = {
    "gate_scans": "subject_id = %(subject)s",
    "temperature_readings": "subject_id = %(subject)s",
    "health_reports": "resident_id = %(subject)s",
    "gate_decisions": "subject_id = %(subject)s",
    "alerts": "subject_id = %(subject)s",
    "dead_letters": "position(original, %(subject)s) > 0",
}
MUTATIONS_SYNC_SINCE = (20, 1)
MUTATION_TIMEOUT_S = 120.0
MIN_TOKEN_LENGTH = 8  # a shorter string could match inside unrelated dead-letter bytes


@dataclass
class ForgetResult:
    subject_id: str
    removed: dict[str, int] = field(default_factory=dict)  # base table → rows removed
    rebuilt: dict[str, int] = field(default_factory=dict)  # roll-up table → buckets rebuilt

    @property
    def total_removed(self) -> int:
        return sum(self.removed.values())


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _delete(writer: Connection, table: str, condition: str) -> None:
    if cluster_of(writer):
        # every shard's local table, on one replica each; replication carries the mutation to
        # the others (sinks.cluster.on_each_shard says why not ON CLUSTER)
        local = local_name(table)
        before = mutation_ids(writer, local)
        on_each_shard(writer, f"ALTER TABLE {writer.database}.{local} DELETE WHERE {condition}")
        wait_for_cluster_mutation(writer, local, before, timeout_s=MUTATION_TIMEOUT_S)
        return
    version = writer.server_version()
    sync = " SETTINGS mutations_sync = 2" if tuple(version[:2]) >= MUTATIONS_SYNC_SINCE else ""
    writer.execute(f"ALTER TABLE {writer.database}.{table} DELETE WHERE {condition}{sync}")
    _wait_for_mutations(writer, table)


def _wait_for_mutations(writer: Connection, table: str) -> None:
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    while True:
        ((pending,),) = writer.query(
            "SELECT count() FROM system.mutations"
            " WHERE database = %(db)s AND table = %(table)s AND is_done = 0",
            {"db": writer.database, "table": table},
        )
        if not int(pending):
            return
        if time.monotonic() > deadline:
            raise SinkError(f"mutation on {writer.database}.{table} did not finish")
        time.sleep(0.05)


def _buckets(writer: Connection, rollup: Rollup, subject: str) -> list[tuple[str, str]]:
    inner = rollup.select_where(f"{rollup.subject_column} = %(subject)s", writer.database)
    rows = writer.query(
        f"SELECT DISTINCT community_id, toString({rollup.bucket}) FROM ({inner})",
        {"subject": subject},
    )
    return sorted((str(c), str(b)) for c, b in rows)


def _in_buckets(rollup: Rollup, buckets: Sequence[tuple[str, str]]) -> str:
    keys = ", ".join(f"({_literal(c)}, {_literal(b)})" for c, b in buckets)
    return f"(community_id, toString({rollup.bucket})) IN ({keys})"


def forget_subject(
    writer: Connection,
    subject_id: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ForgetResult:
    """Delete every row of ``subject_id``; return how many rows each table lost. With
    ``dry_run`` only count. ``progress`` counts the tables done (base tables, then roll-ups)."""
    if len(subject_id) < MIN_TOKEN_LENGTH:
        raise ValueError(f"a subject token has at least {MIN_TOKEN_LENGTH} characters")
    db, params = writer.database, {"subject": subject_id}
    result = ForgetResult(subject_id)
    touched = {r.target: _buckets(writer, r, subject_id) for r in rollups()}
    if progress is not None:
        progress.set_total(len(SUBJECT_TABLES) + len(touched))
    for table, condition in SUBJECT_TABLES.items():
        ((n,),) = writer.query(f"SELECT count() FROM {db}.{table} WHERE {condition}", params)
        result.removed[table] = int(n)
        if int(n) and not dry_run:
            _delete(writer, table, condition.replace("%(subject)s", _literal(subject_id)))
        if progress is not None:
            progress.advance()
    for rollup in rollups():
        buckets = touched[rollup.target]
        result.rebuilt[rollup.target] = len(buckets)
        if progress is not None:
            progress.advance()
        if not buckets or dry_run:
            continue
        _delete(writer, rollup.target, _in_buckets(rollup, buckets))
        rebuild = rollup.select_where(_in_buckets(rollup, buckets), db)
        # insert_deduplicate off: on a replicated roll-up a rebuilt bucket can be the very
        # block an earlier insert wrote (what is left after the subject is exactly one earlier
        # batch), and a dropped "duplicate" would leave the bucket empty
        execute_with_settings(
            writer, f"INSERT INTO {db}.{rollup.target} {rebuild}", {"insert_deduplicate": 0}
        )
    log.info(
        "forgot subject: %d rows removed, buckets rebuilt %s", result.total_removed, result.rebuilt
    )
    return result
