"""Rule state in Kafka: a task's store changes become records of the compacted changelog
topic, and a task that is assigned a partition rebuilds its stores by reading that partition of
the changelog to its end (Kafka Streams' ``ProcessorStateManager``; faust ``tables/recovery``).

- Record key ``<store>\\x1f<state key>`` (``streams.state.store.changelog_key``), value the
  store's encoding, tombstone = deletion. Task *p* writes partition *p* explicitly.
- A value over ``PART_BYTES`` is split by bytes (``changelog_entries``): parts under keys
  ``<record key>\\x1e<i>``, then the record key itself with a manifest (``PARTS_TAG`` + count),
  all in the same transaction; parts a shorter value no longer uses are tombstoned. Restore
  joins them (``join_parts``). No changelog record can then exceed Kafka's record limit,
  whatever a store holds.
- Restore reads ``read_committed`` up to the partition's end offset taken *after* the task's
  transactional producer fenced any earlier owner, so an aborted or in-doubt transaction of a
  zombie is never restored. It logs progress and never gives up: a broker that is away makes
  it wait, it does not make it start from nothing. Restore time grows with the state (the
  compacted changelog), not with the event history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition

from fangxian.core.progress import Progress
from streams.state.store import KeyedStore, split_changelog_key

log = logging.getLogger(__name__)

StateChange = tuple[str, str, bytes | None]  # (store name, state key, value or None)

#: a store value above this is written as several records (far below Kafka's 1 MB default)
PART_BYTES = 256 * 1024
#: the value of a record key whose value is in parts: this tag, then the count (no store
#: encoding starts with a NUL byte)
PARTS_TAG = b"\x00fangxian-parts:"
PART_SEP = b"\x1e"


def part_key(record_key: bytes, i: int) -> bytes:
    return record_key + PART_SEP + str(i).encode()


def _is_part(record_key: bytes) -> bool:
    return PART_SEP in record_key.partition(b"\x1f")[2]


def changelog_entries(
    changes: Iterable[StateChange], parts: dict[bytes, int], part_bytes: int = PART_BYTES
) -> list[tuple[bytes, bytes | None]]:
    """(record key, value) for each change, a large value split into parts. ``parts`` (record
    key -> parts written last, kept by the task and filled by restore) is updated."""
    from streams.state.store import changelog_key

    out: list[tuple[bytes, bytes | None]] = []
    for store, key, raw in changes:
        ck = changelog_key(store, key)
        old = parts.pop(ck, 0)
        n = 0
        value = raw
        if raw is not None and len(raw) > part_bytes:
            n = -(-len(raw) // part_bytes)
            out.extend(
                (part_key(ck, i), raw[i * part_bytes : (i + 1) * part_bytes]) for i in range(n)
            )
            parts[ck] = n
            value = PARTS_TAG + str(n).encode()
        out.extend((part_key(ck, i), None) for i in range(n, old))
        out.append((ck, value))
    return out


def join_parts(
    newest: dict[bytes, bytes | None], parts: dict[bytes, int] | None = None
) -> list[tuple[bytes, bytes | None]]:
    """The newest record of each key as the store values they stand for: parts joined, part
    records themselves left out. ``parts`` learns how many parts each key has now."""
    out: list[tuple[bytes, bytes | None]] = []
    for ck, value in newest.items():
        if _is_part(ck):
            continue
        if value is not None and value.startswith(PARTS_TAG):
            n = int(value[len(PARTS_TAG) :])
            pieces = [newest.get(part_key(ck, i)) for i in range(n)]
            if any(p is None for p in pieces):
                raise ValueError(f"changelog {ck!r}: {n} parts announced, some missing")
            value = b"".join(p for p in pieces if p is not None)
            if parts is not None:
                parts[ck] = n
        elif parts is not None:
            parts.pop(ck, None)
        out.append((ck, value))
    return out


class TaskState(Protocol):
    """What a task's state offers the topology (``RuleEngine`` implements it, docs/topology.md)."""

    def stores(self) -> list[KeyedStore[Any]]: ...

    def take_changes(self) -> list[StateChange]: ...

    def restore(self, store: str, key: str, raw: bytes | None) -> None: ...


class StoreSet:
    """``TaskState`` over a list of KeyedStores (tests and the restore benchmark use it)."""

    def __init__(self, stores: Iterable[KeyedStore[Any]]) -> None:
        self._stores = {s.name: s for s in stores}

    def stores(self) -> list[KeyedStore[Any]]:
        return list(self._stores.values())

    def take_changes(self) -> list[StateChange]:
        return [
            (name, key, raw)
            for name, store in sorted(self._stores.items())
            for key, raw in store.take_changes()
        ]

    def restore(self, store: str, key: str, raw: bytes | None) -> None:
        self._stores[store].restore(key, raw)


@dataclass
class RestoreResult:
    records: int
    end_offset: int
    seconds: float


async def restore_partitions(
    consumer: Any,
    targets: dict[TopicPartition, tuple[int, Callable[[str, str, bytes | None], None]]],
    *,
    progress_every_s: float = 5.0,
    max_records: int = 50_000,
) -> dict[TopicPartition, RestoreResult]:
    """Replay each changelog partition from its start offset to its end into its ``apply``.

    ``consumer`` is a started consumer without a group, ``isolation_level=read_committed``.
    Returns per partition what was applied and the end offset (the task's next restore start).
    """
    began = time.monotonic()
    if not targets:
        return {}
    tps = list(targets)
    consumer.assign(tps)
    ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
    counts = dict.fromkeys(tps, 0)
    todo: set[TopicPartition] = set()
    for tp, (start, _) in targets.items():
        if start < ends[tp]:
            consumer.seek(tp, start)
            todo.add(tp)
    # offsets include transaction markers, so the total is an upper bound of the records
    progress = Progress(
        "恢复规则状态 restoring rule state",
        total=sum(ends[tp] - targets[tp][0] for tp in todo) or None,
        unit="records",
        interval_s=progress_every_s,
    )
    # a key's newest record wins (a changelog not yet compacted holds every version): only it
    # is decoded and applied, once the partition is read to its end
    latest: dict[TopicPartition, dict[bytes, bytes | None]] = {tp: {} for tp in todo}
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=500, max_records=max_records)
        for tp, records in batches.items():
            newest = latest[tp]
            end = ends[tp]
            before = counts[tp]
            for r in records:
                if r.offset >= end:
                    break
                newest[r.key] = r.value
                counts[tp] += 1
            progress.advance(counts[tp] - before)
        for tp in list(todo):
            if await consumer.position(tp) >= ends[tp]:
                todo.discard(tp)
    for tp, newest in latest.items():
        apply = targets[tp][1]
        for raw_key, value in newest.items():
            store, key = split_changelog_key(raw_key)
            apply(store, key, value)
    progress.close()
    seconds = time.monotonic() - began
    consumer.assign([])
    return {tp: RestoreResult(counts[tp], ends[tp], seconds) for tp in tps}


def restore_with_librdkafka(
    consumer: Any,
    targets: dict[tuple[str, int], tuple[int, int, Callable[[str, str, bytes | None], None]]],
    *,
    progress_every_s: float = 5.0,
    batch: int = 10_000,
    parts: dict[tuple[str, int], dict[bytes, int]] | None = None,
) -> dict[tuple[str, int], RestoreResult]:
    """``restore_partitions`` for a confluent-kafka consumer (no group, read_committed):
    ``targets`` maps (topic, partition) to (start offset, end offset, apply). The end is given
    by the caller, who took it once no transaction was open on the partition. Values written
    in parts are joined; ``parts`` (per partition) learns each key's part count."""
    from confluent_kafka import KafkaError
    from confluent_kafka import TopicPartition as CTP

    began = time.monotonic()
    todo = {tp for tp, (start, end, _) in targets.items() if start < end}
    counts = dict.fromkeys(targets, 0)
    if todo:
        consumer.assign([CTP(t, p, targets[(t, p)][0]) for t, p in todo])
    progress = Progress(
        "恢复规则状态 restoring rule state",
        total=sum(targets[tp][1] - targets[tp][0] for tp in todo) or None,
        unit="records",
        interval_s=progress_every_s,
    )
    latest: dict[tuple[str, int], dict[bytes, bytes | None]] = {tp: {} for tp in todo}
    while todo:
        for r in consumer.consume(batch, 0.2):
            tp = (r.topic(), r.partition())
            if r.error() is not None:
                # the consumer has ``enable.partition.eof``: the end of what read_committed may
                # read (a commit marker as the last offset leaves the position one short of it)
                if r.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(tp)
                continue
            if tp not in todo:
                continue
            if r.offset() >= targets[tp][1]:
                continue
            latest[tp][r.key()] = r.value()
            counts[tp] += 1
            progress.advance(1)
        for tp in list(todo):
            position = consumer.position([CTP(*tp)])[0].offset
            if position >= targets[tp][1]:
                todo.discard(tp)
    for tp, newest in latest.items():
        apply = targets[tp][2]
        for raw_key, value in join_parts(newest, (parts or {}).get(tp)):
            store, key = split_changelog_key(raw_key)
            apply(store, key, value)
    progress.close()
    seconds = time.monotonic() - began
    if counts:
        consumer.unassign()
    return {tp: RestoreResult(counts[tp], targets[tp][1], seconds) for tp in targets}
