"""The engine's state interface (docs/topology.md): stores, take_changes, restore.

An engine restored from the changelog of another must make exactly the outputs the other would
have made: every piece of state that decides an output is in a store.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from streams.engine import Item, Output, RuleEngine
from tests.unit.community_day import T0, H, community_day, reference_order

Changelog = dict[tuple[str, str], bytes]


def _apply(changelog: Changelog, changes: list[tuple[str, str, bytes | None]]) -> None:
    """What a compacted changelog topic keeps: the latest value per key, no tombstoned keys."""
    for store, key, raw in changes:
        if raw is None:
            changelog.pop((store, key), None)
        else:
            changelog[(store, key)] = raw


def _batches(items: list[Item], seed: int) -> list[list[Item]]:
    rng = random.Random(seed)
    out: list[list[Item]] = []
    i = 0
    while i < len(items):
        n = rng.randint(1, 25)
        out.append(sorted(items[i : i + n], key=reference_order))
        i += n
    return out


def _outputs(out: Output) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    return out.decisions, out.alerts, out.late_event_ids


def test_stores_have_unique_names_and_cover_every_state_object() -> None:
    names = [s.name for s in RuleEngine().stores()]
    assert len(names) == len(set(names))
    assert set(names) == {
        "clock",
        "replay",
        "quota",
        "dedupe",
        "pass_entries",
        "fever",
        "devices",
        "observation",
        "suppress",
        "clusters",
        "occupancy",
        "gate_rates",
    }


def test_take_changes_reports_each_changed_key_once_then_nothing() -> None:
    day = community_day(1, scans=40)
    e = day.engine()
    e.on_events(day.items)
    changes = e.take_changes()
    keys = [(s, k) for s, k, _ in changes]
    assert keys and len(keys) == len(set(keys))
    assert keys == sorted(keys)  # deterministic: store, then key order
    assert e.take_changes() == []


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"day {s}") for s in (1, 2, 3, 4)])
@pytest.mark.parametrize("cut", [pytest.param(c, id=f"restart after {c:.0%}") for c in (0.3, 0.7)])
def test_engine_restored_from_its_changelog_makes_the_same_outputs(seed: int, cut: float) -> None:
    day = community_day(seed, communities=2, scans=150)
    batches = _batches(day.items, seed)
    k = int(len(batches) * cut)

    never_restarted = day.engine()
    lost = day.engine()
    changelog: Changelog = {}
    expected = []
    for i, batch in enumerate(batches):
        out = never_restarted.on_events(batch)
        never_restarted.take_changes()
        if i >= k:
            expected.append(_outputs(out))
        else:
            lost.on_events(batch)
            _apply(changelog, lost.take_changes())
    expected_tick = _outputs(never_restarted.tick(T0 + 30 * H))

    restored = day.engine()
    for (store, key), raw in changelog.items():
        restored.restore(store, key, raw)
    assert restored.take_changes() == []  # restoring is not a change
    got = [_outputs(restored.on_events(batch)) for batch in batches[k:]]
    for b, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"batch {k + b} differs after the restore"
    assert _outputs(restored.tick(T0 + 30 * H)) == expected_tick
    for a, b in zip(never_restarted.stores(), restored.stores(), strict=True):
        assert a.snapshot() == b.snapshot(), f"store {a.name} differs"


def test_restore_rejects_an_unknown_store() -> None:
    with pytest.raises(KeyError, match="no store"):
        RuleEngine().restore("nope", "k", b"1")


def test_restore_tombstone_deletes() -> None:
    day = community_day(5, scans=30)
    e = day.engine()
    e.on_events(day.items)
    store, key, raw = next(c for c in e.take_changes() if c[0] == "quota")
    fresh = day.engine()
    fresh.restore(store, key, raw)
    assert key in {s.name: s for s in fresh.stores()}["quota"]
    fresh.restore(store, key, None)
    assert key not in {s.name: s for s in fresh.stores()}["quota"]
