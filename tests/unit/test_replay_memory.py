"""ReplayMemory (streams.state.access): one changelog record per batch, same behaviour as one
key per event — oldest-first eviction, expiry by event time, and a restore that remembers the
same events in the same order."""

from __future__ import annotations

import pytest

from streams.state import access
from streams.state.access import CHUNK_EVENTS, SEQ_KEY, ReplayMemory


def _fill(memory: ReplayMemory, batches: list[int]) -> list[str]:
    ids: list[str] = []
    for b, size in enumerate(batches):
        for i in range(size):
            eid = f"e{b}-{i}"
            decision = (
                None
                if i % 2
                else {
                    "event_id": eid,
                    "community_id": "c",
                    "gate_id": "g",
                    "subject_id": "s",
                    "decision": "ALLOW",
                    "reasons": ["A", "B"] if i % 3 else [],
                    "decided_at": 1000 + i,
                }
            )
            memory.remember(eid, "c", 1000 * b + i, decision)
            ids.append(eid)
        memory.seal()
    return ids


def _restored(memory: ReplayMemory, capacity: int) -> ReplayMemory:
    fresh = ReplayMemory(capacity)
    for key, raw in memory.store.snapshot().items():
        fresh.store.restore(key, raw)
        fresh.restored(key)
    return fresh


@pytest.mark.parametrize(
    ("batches", "capacity", "records"),
    [
        pytest.param([3, 4], 100, 3, id="two batches: two chunks and the number"),
        pytest.param([CHUNK_EVENTS + 1], 10_000, 3, id="a big batch is cut into chunks"),
        pytest.param([5, 5, 5], 7, 3, id="eviction empties the oldest chunk: its key goes"),
    ],
)
def test_records_per_batch_and_eviction_oldest_first(
    batches: list[int], capacity: int, records: int
) -> None:
    memory = ReplayMemory(capacity)
    ids = _fill(memory, batches)
    kept = ids[-capacity:]
    assert len(memory) == len(kept)
    assert [e for e in ids if e in memory] == kept
    changes = memory.store.take_changes()
    assert len([k for k, raw in changes if raw is not None]) == records
    assert SEQ_KEY in dict(changes)


def test_restore_gives_the_same_memory_and_continues_the_numbering() -> None:
    live = ReplayMemory(12)
    _fill(live, [5, 6])
    restored = _restored(live, 12)
    assert restored.store.snapshot() == live.store.snapshot()
    for eid in (f"e{b}-{i}" for b in range(2) for i in range(6)):
        assert (eid in restored) == (eid in live)
        assert restored.decision(eid) == live.decision(eid)
    for memory in (live, restored):  # the same next batch evicts the same events
        memory.store.take_changes()
        memory.remember("x", "c", 5000, None)
        memory.remember("y", "c", 5001, None)
        memory.seal()
    assert restored.store.snapshot() == live.store.snapshot()
    assert restored.store.take_changes() == live.store.take_changes()


@pytest.mark.parametrize(
    ("horizon", "left"),
    [
        pytest.param(0, 8, id="nothing older than the horizon"),
        pytest.param(1002, 6, id="part of the first chunk: the chunk is rewritten"),
        pytest.param(1004, 4, id="the whole first chunk: its key is deleted"),
    ],
)
def test_expire_by_event_time(horizon: int, left: int) -> None:
    memory = ReplayMemory(100)
    _fill(memory, [0, 4, 4])  # chunk 0: t 1000..1003, chunk 1: t 2000..2003
    memory.store.take_changes()
    memory.expire({"c": horizon})
    assert len(memory) == left
    changes = dict(memory.store.take_changes())
    first = access.chunk_key(0)
    if left == 4:
        assert changes == {first: None}
    elif left == 6:
        assert changes[first] is not None
    else:
        assert changes == {}
    assert _restored(memory, 100).store.snapshot() == memory.store.snapshot()
