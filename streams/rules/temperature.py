"""Temperature screening: plausibility and the fever recheck state machine (``FeverRecheck``).

A reading at or above the fever threshold is not yet a fever: it opens a recheck. A second reading
of the same subject (or, without a subject, the same device) that is *later in event time* and
within the recheck window decides it: at/above the threshold confirms the fever, below clears it.
No recheck by the end of the window is a missed recheck. Readings outside the plausible range are
never a fever (an infrared gun reads 33 °C in the cold): they prompt a re-measure and count as
evidence against the device instead.

Out-of-order input is handled in event time: a high reading that arrives after a later normal
reading of the same subject within its window is cleared by it, and a normal reading earlier than
an open recheck does not decide it.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from streams.rules.config import CommunityRules

NORMAL = 0
HIGH = 1
IMPLAUSIBLE = 2

# Status of a high reading.
OPEN = "OPEN"
CONFIRMED = "CONFIRMED"
CLEARED = "CLEARED"
MISSED = "MISSED"
_UNDECIDED = (OPEN, MISSED)

# Recent readings kept per subject/device to decide out-of-order rechecks.
MAX_READINGS_PER_KEY = 8


def classify(temperature_c: float, rules: CommunityRules) -> int:
    """NORMAL, HIGH (plausible and ≥ threshold) or IMPLAUSIBLE."""
    if temperature_c < rules.plausible_min_c or temperature_c > rules.plausible_max_c:
        return IMPLAUSIBLE
    if temperature_c >= rules.fever_threshold_c:
        return HIGH
    return NORMAL


def recheck_key(subject_id: str | None, device_id: str) -> str:
    """Whose readings form one recheck sequence: the subject, else the device."""
    return subject_id if subject_id else "device:" + device_id


class Reading:
    """One plausible reading in a recheck sequence."""

    __slots__ = (
        "deadline",
        "device_id",
        "event_id",
        "event_time",
        "gate_id",
        "high",
        "status",
        "subject_id",
        "temperature_c",
    )

    def __init__(
        self,
        event_id: str,
        event_time: int,
        temperature_c: float,
        high: bool,
        gate_id: str,
        device_id: str,
        subject_id: str | None,
    ) -> None:
        self.event_id = event_id
        self.event_time = event_time
        self.temperature_c = temperature_c
        self.high = high
        self.gate_id = gate_id
        self.device_id = device_id
        self.subject_id = subject_id
        self.status = OPEN if high else ""
        self.deadline = 0


class FeverOutcome(NamedTuple):
    """What a reading decided. ``alert_type`` is FEVER_RECHECK (``second`` is None),
    FEVER_CONFIRMED or FEVER_CLEARED; ``first`` is the high reading that opened the recheck."""

    alert_type: str
    first: Reading
    second: Reading | None


class _KeyState:
    """Readings of one subject/device: the latest few (to catch out-of-order rechecks) and the
    high readings whose recheck is still undecided."""

    __slots__ = ("max_t", "recent", "undecided")

    def __init__(self, reading: Reading) -> None:
        self.max_t = reading.event_time
        self.recent: list[Reading] = [reading]
        self.undecided: list[Reading] = []


class FeverRecheck:
    """Recheck state of one community: per subject/device key, recent plausible readings and open
    rechecks, plus the deadlines of open rechecks."""

    __slots__ = ("_deadlines", "_keys", "_seq")

    def __init__(self) -> None:
        self._keys: dict[str, _KeyState] = {}
        self._deadlines: list[tuple[int, int, Reading]] = []
        self._seq = 0

    def observe(self, key: str, reading: Reading, window_ms: int) -> FeverOutcome | None:
        """Add a plausible reading; returns what it decided, if anything."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(reading)
            if reading.high:
                return self._open(state, reading, window_ms)
            return None
        t = reading.event_time
        in_order = t >= state.max_t
        if in_order:
            state.max_t = t
        recent = state.recent
        recent.append(reading)
        if len(recent) > MAX_READINGS_PER_KEY:
            del recent[0]
        first = _undecided_before(state.undecided, t, window_ms) if state.undecided else None
        if first is not None:
            state.undecided.remove(first)
            if reading.high:
                first.status = CONFIRMED
                reading.status = CONFIRMED
                return FeverOutcome("FEVER_CONFIRMED", first, reading)
            first.status = CLEARED
            return FeverOutcome("FEVER_CLEARED", first, reading)
        if not reading.high:
            return None
        # In event time, did a recheck of this reading arrive before it did?
        later = None if in_order else _earliest_after(recent, t, window_ms)
        if later is None:
            return self._open(state, reading, window_ms)
        if not later.high:
            reading.status = CLEARED
            return FeverOutcome("FEVER_CLEARED", reading, later)
        reading.status = CONFIRMED
        if later.status in _UNDECIDED:
            later.status = CONFIRMED
            if later in state.undecided:
                state.undecided.remove(later)
            return FeverOutcome("FEVER_CONFIRMED", reading, later)
        return None  # part of a fever episode already decided

    def _open(self, state: _KeyState, reading: Reading, window_ms: int) -> FeverOutcome:
        reading.status = OPEN
        reading.deadline = reading.event_time + window_ms
        state.undecided.append(reading)
        self._seq += 1
        heapq.heappush(self._deadlines, (reading.deadline, self._seq, reading))
        return FeverOutcome("FEVER_RECHECK", reading, None)

    def close_due(self, until_ms: int) -> list[Reading]:
        """Open rechecks whose window ended at or before ``until_ms``: marked MISSED and returned.
        A recheck arriving later (within lateness) can still confirm or clear them."""
        missed: list[Reading] = []
        heap = self._deadlines
        while heap and heap[0][0] <= until_ms:
            reading = heapq.heappop(heap)[2]
            if reading.status == OPEN:
                reading.status = MISSED
                missed.append(reading)
        return missed

    def expire(self, before_ms: int) -> int:
        """Drop readings older than ``before_ms`` (open rechecks are kept until closed)."""
        dropped = 0
        for key in list(self._keys):
            state = self._keys[key]
            undecided = [
                r for r in state.undecided if r.event_time >= before_ms or r.status == OPEN
            ]
            recent = [r for r in state.recent if r.event_time >= before_ms]
            dropped += len(state.recent) - len(recent)
            if not undecided and not recent:
                del self._keys[key]
                continue
            state.undecided = undecided
            state.recent = recent
        return dropped

    def __len__(self) -> int:
        return len(self._keys)

    def open_count(self) -> int:
        return sum(1 for _, _, r in self._deadlines if r.status == OPEN)


def _undecided_before(undecided: list[Reading], t: int, window_ms: int) -> Reading | None:
    """The earliest undecided high reading r with r.t < t ≤ r.t + window."""
    found: Reading | None = None
    for r in undecided:
        if r.event_time < t <= r.event_time + window_ms and (
            found is None or r.event_time < found.event_time
        ):
            found = r
    return found


def _earliest_after(history: list[Reading], t: int, window_ms: int) -> Reading | None:
    """The earliest reading r with t < r.t ≤ t + window (a recheck that arrived first)."""
    found: Reading | None = None
    for r in history:
        if t < r.event_time <= t + window_ms and (found is None or r.event_time < found.event_time):
            found = r
    return found
