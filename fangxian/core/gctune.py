"""Garbage-collector setups for a long-running stage, and a probe of the collector's pauses.

A stage that holds reference data calls ``apply_mode(FREEZE)`` once that data is loaded (the
decide stage should; ``fangxian bench --worker-gc`` measures the setups on the bench worker —
figures in docs/benchmark.md). Modes:

- ``default``: CPython's own (thresholds 700, 10, 10);
- ``freeze``: after the reference data is loaded, ``gc.collect()`` then ``gc.freeze()``: the
  objects alive then (reference store, rule tables, imported modules) move to the permanent
  generation, so no later collection walks them;
- ``freeze-tuned``: ``freeze`` plus thresholds (``TUNED_THRESHOLDS``): fewer young
  collections, and full ones only when the young survivors have grown a lot.

``GcProbe`` times every collection through ``gc.callbacks``: count, total and longest pause
per generation, on the wall clock (what a batch waits) and as the thread's CPU time (the
collector's own work, which preemption on a shared machine does not inflate).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Final

DEFAULT: Final = "default"
FREEZE: Final = "freeze"
FREEZE_TUNED: Final = "freeze-tuned"
MODES: Final = (DEFAULT, FREEZE, FREEZE_TUNED)
TUNED_THRESHOLDS: Final = (50_000, 20, 100)


def apply_mode(mode: str) -> dict[str, Any]:
    """Set the collector up for ``mode`` (once the long-lived data is loaded); what was done."""
    if mode not in MODES:
        raise ValueError(f"unknown gc mode {mode!r}; known: {', '.join(MODES)}")
    frozen = 0
    tracked = len(gc.get_objects())
    if mode in (FREEZE, FREEZE_TUNED):
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
    if mode == FREEZE_TUNED:
        gc.set_threshold(*TUNED_THRESHOLDS)
    return {
        "mode": mode,
        "tracked_objects": tracked,
        "frozen_objects": frozen,
        "thresholds": list(gc.get_threshold()),
    }


def tracked_objects() -> dict[str, int]:
    """Objects a full collection walks now, and those frozen out of its reach."""
    return {"tracked_objects": len(gc.get_objects()), "frozen_objects": gc.get_freeze_count()}


class GcProbe:
    """Pauses of the cyclic garbage collector, per generation, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self._started = 0.0
        self._started_cpu = 0.0
        self.reset()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        pause = time.perf_counter() - self._started
        cpu = time.thread_time() - self._started_cpu
        g = int(info.get("generation", 0))
        self.count[g] += 1
        self.total_s[g] += pause
        self.max_s[g] = max(self.max_s[g], pause)
        self.cpu_total_s[g] += cpu
        self.cpu_max_s[g] = max(self.cpu_max_s[g], cpu)

    def install(self) -> GcProbe:
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.total_s = [0.0, 0.0, 0.0]
        self.max_s = [0.0, 0.0, 0.0]
        self.cpu_total_s = [0.0, 0.0, 0.0]
        self.cpu_max_s = [0.0, 0.0, 0.0]

    def report(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "collections": self.count[g],
                "total_ms": round(self.total_s[g] * 1000, 2),
                "max_ms": round(self.max_s[g] * 1000, 2),
                "cpu_total_ms": round(self.cpu_total_s[g] * 1000, 2),
                "cpu_max_ms": round(self.cpu_max_s[g] * 1000, 2),
            }
            for g in range(3)
        }
