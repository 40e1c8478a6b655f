"""Temperature screening: plausibility and the fever recheck state machine (``FeverRecheck``).

A reading at or above the fever threshold is not yet a fever: it opens a recheck. A second reading
of the same subject (or, without a subject, the same device) that is *later in event time* and
within the recheck window decides it: at/above the threshold confirms the fever, below clears it.
No recheck by the end of the window is a missed recheck. Readings outside the plausible range are
never a fever (an infrared gun reads 33 °C in the cold): they prompt a re-measure and count as
evidence against the device instead.

Out-of-order input is handled in event time: a high reading that arrives after a later normal
reading of the same subject within its window is cleared by it, and a normal reading earlier than
an open recheck does not decide it. Two readings of one instant from one device are one
measurement (a gate that puts ``temperature_c`` on the scan and also publishes the reading): the
second is a duplicate and decides nothing. A reading without a subject belongs to the subject of
a scan of the same instant on the same device (whichever arrives first); failing that the
device keys it, and subject-less readings decide nothing about each other: the next reading of
a gate is most likely the next person, so it neither clears nor confirms a stranger's fever —
the recheck request stands until a recheck naming the person comes, or is missed.

State: one ``KeyedStore`` (``fever``) shared by every community's ``FeverRecheck``; key
``community|subject-or-device``; the deadline heap and the instant index are derived from it
(rebuilt by ``restore``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from streams.rules.config import CommunityRules
from streams.state.store import KeyedStore

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


def tenths(celsius: float) -> int:
    """A temperature in tenths of a degree, rounded half up: the precision gate devices show and
    every message prints (``fmt_c``). Every comparison with a threshold or a plausible bound is
    made on it, so a message never says "37.3 °C, below 37.3 °C" of a 37.28 °C reading (a
    Fahrenheit device's 99.1 °F): what reads 37.3 is 37.3, at the threshold (issue 20)."""
    return math.floor(celsius * 10 + 0.5 + 1e-9)


def at_or_above(celsius: float, threshold_c: float) -> bool:
    """``celsius ≥ threshold_c`` at the precision of 0.1 °C."""
    return tenths(celsius) >= tenths(threshold_c)


def within_plausible(celsius: float, rules: CommunityRules) -> bool:
    """Within [plausible_min_c, plausible_max_c] (both included), at 0.1 °C."""
    t = tenths(celsius)
    return tenths(rules.plausible_min_c) <= t <= tenths(rules.plausible_max_c)


def classify(temperature_c: float, rules: CommunityRules) -> int:
    """NORMAL, HIGH (plausible and ≥ threshold) or IMPLAUSIBLE, compared at 0.1 °C (``tenths``)."""
    t = tenths(temperature_c)
    if t < tenths(rules.plausible_min_c) or t > tenths(rules.plausible_max_c):
        return IMPLAUSIBLE
    if t >= tenths(rules.fever_threshold_c):
        return HIGH
    return NORMAL


def recheck_key(subject_id: str | None, device_id: str) -> str:
    """Whose readings form one recheck sequence: the subject, else the device."""
    return subject_id if subject_id else "device:" + device_id


class Reading:
    """One plausible reading in a recheck sequence. ``role`` is what it was for its own scan's
    decision: FEVER_RECHECK (it opened a recheck), FEVER_CONFIRMED or FEVER_CLEARED (it decided
    an earlier one), or empty."""

    __slots__ = (
        "announced",
        "deadline",
        "device_id",
        "event_id",
        "event_time",
        "gate_id",
        "high",
        "role",
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
        self.role = ""
        # a high handheld reading that opens a recheck is announced (FEVER_RECHECK) only once
        # no earlier gate reading it rechecks can still arrive: see ``FeverRecheck.announce_due``
        self.announced = True

    def to_list(self) -> list[Any]:
        return [
            self.event_id,
            self.event_time,
            self.temperature_c,
            self.high,
            self.gate_id,
            self.device_id,
            self.subject_id,
            self.status,
            self.deadline,
            self.role,
            self.announced,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> Reading:
        r = cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
        r.status, r.deadline, r.role, r.announced = v[7], v[8], v[9], v[10]
        return r


class FeverOutcome(NamedTuple):
    """What a reading decided. ``alert_type`` is FEVER_RECHECK (``second`` is None),
    FEVER_CONFIRMED or FEVER_CLEARED; ``first`` is the high reading that opened the recheck.
    ``opened`` is set when an out-of-order high reading was decided at once: its own
    FEVER_RECHECK is owed too (the gate did stop the person)."""

    alert_type: str
    first: Reading
    second: Reading | None
    opened: bool = False


#: ``observe`` result for a second copy of one measurement (same instant, same device)
DUPLICATE = "DUPLICATE"


class _KeyState:
    """Readings of one subject/device: the latest few (to catch out-of-order rechecks) and the
    high readings whose recheck is still undecided."""

    __slots__ = ("max_t", "recent", "undecided")

    def __init__(self, reading: Reading | None) -> None:
        self.max_t = 0 if reading is None else reading.event_time
        self.recent: list[Reading] = [] if reading is None else [reading]
        self.undecided: list[Reading] = []


def _encode_state(state: _KeyState) -> bytes:
    recent = state.recent
    if not state.undecided:  # the common case: the same bytes without the identity index
        return orjson.dumps(
            [state.max_t, [r.to_list() for r in recent], list(range(len(recent))), []]
        )
    readings: list[Reading] = list(recent)
    for r in state.undecided:
        if not any(r is x for x in readings):
            readings.append(r)
    index = {id(r): i for i, r in enumerate(readings)}
    return orjson.dumps(
        [
            state.max_t,
            [r.to_list() for r in readings],
            [index[id(r)] for r in state.recent],
            [index[id(r)] for r in state.undecided],
        ]
    )


def _decode_state(raw: bytes) -> _KeyState:
    max_t, readings, recent, undecided = orjson.loads(raw)
    objs = [Reading.from_list(v) for v in readings]
    state = _KeyState(None)
    state.max_t = max_t
    state.recent = [objs[i] for i in recent]
    state.undecided = [objs[i] for i in undecided]
    return state


def fever_store() -> KeyedStore[_KeyState]:
    return KeyedStore("fever", encode=_encode_state, decode=_decode_state)


class FeverRecheck:
    """Recheck state of one community: per subject/device key, recent plausible readings and open
    rechecks, plus the deadlines of open rechecks (a heap derived from the store)."""

    __slots__ = (
        "_announce",
        "_deadlines",
        "_get",
        "_instants",
        "_keys",
        "_prefix",
        "_seq",
        "_store",
        "adopted",
    )

    def __init__(self, store: KeyedStore[_KeyState] | None = None, prefix: str = "") -> None:
        self._store: KeyedStore[_KeyState] = fever_store() if store is None else store
        self._get = self._store.getter()
        self._prefix = prefix
        self._keys: set[str] = set()  # store keys of this community
        self._deadlines: list[tuple[int, int, str, Reading]] = []
        self._announce: list[tuple[int, int, str, Reading]] = []
        self._instants: dict[tuple[str, int], str] = {}  # (device, t) -> key, named readings
        self._seq = 0
        self.adopted: list[FeverOutcome] = []

    # -- restore
    def restored(self, store_key: str) -> None:
        """The store's value under ``store_key`` was restored: rebuild the derived indexes."""
        state = self._store.get(store_key)
        if state is None:
            self._keys.discard(store_key)
            return
        self._keys.add(store_key)
        key = store_key[len(self._prefix) :]
        for r in state.undecided:
            if r.status == OPEN:
                self._seq += 1
                heapq.heappush(self._deadlines, (r.deadline, self._seq, store_key, r))
            if not r.announced:
                self._seq += 1
                heapq.heappush(self._announce, (r.event_time, self._seq, store_key, r))
        if not key.startswith("device:"):
            for r in state.recent:
                self._instants[(r.device_id, r.event_time)] = key

    def key_for(self, subject_id: str | None, device_id: str, t: int) -> str:
        """The recheck key of a reading: its subject; without one, the subject of a named
        reading of the same instant on the same device (the scan it belongs to), else the
        device."""
        if subject_id:
            return subject_id
        named = self._instants.get((device_id, t))
        return named if named is not None else "device:" + device_id

    def observe(self, key: str, reading: Reading, window_ms: int) -> FeverOutcome | str | None:
        """Add a plausible reading; returns what it decided, ``DUPLICATE`` for a second copy
        of a measurement already seen, or None. What moving a subject-less reading to this
        subject decided (``_adopt``) is left in ``adopted``."""
        store_key = self._prefix + key
        store = self._store
        t = reading.event_time
        if not key.startswith("device:"):
            self._adopt(store_key, key, reading, window_ms)
        state = self._get(store_key)
        if state is None:
            state = _KeyState(None)
            store[store_key] = state
            self._keys.add(store_key)
        else:
            for r in state.recent:
                if r.event_time == t and r.device_id == reading.device_id:
                    return DUPLICATE
            store.touch(store_key)
        return self._decide(store_key, key, state, reading, window_ms)

    def _decide(
        self, store_key: str, key: str, state: _KeyState, reading: Reading, window_ms: int
    ) -> FeverOutcome | None:
        self._index(key, reading)
        t = reading.event_time
        in_order = t >= state.max_t
        if in_order:
            state.max_t = t
        recent = state.recent
        recent.append(reading)
        if len(recent) > MAX_READINGS_PER_KEY:
            del recent[0]
        if key.startswith("device:"):
            # without a subject, the next reading of the device is most likely the next
            # person: subject-less readings decide nothing about each other
            return self._open(store_key, state, reading, window_ms) if reading.high else None
        first = _undecided_before(state.undecided, t, window_ms) if state.undecided else None
        if first is not None:
            state.undecided.remove(first)
            if reading.high:
                first.status = CONFIRMED
                reading.status = CONFIRMED
                reading.role = "FEVER_CONFIRMED"
                return FeverOutcome("FEVER_CONFIRMED", first, reading)
            first.status = CLEARED
            reading.role = "FEVER_CLEARED"
            return FeverOutcome("FEVER_CLEARED", first, reading)
        if not reading.high:
            return None
        # In event time, did a recheck of this reading arrive before it did?
        later = None if in_order else _earliest_after(recent, reading, t, window_ms)
        if later is None:
            return self._open(store_key, state, reading, window_ms)
        reading.role = "FEVER_RECHECK"
        reading.deadline = t + window_ms
        if not later.high:
            reading.status = CLEARED
            later.role = later.role or "FEVER_CLEARED"
            return FeverOutcome("FEVER_CLEARED", reading, later, True)
        reading.status = CONFIRMED
        if later.status in _UNDECIDED:
            later.status = CONFIRMED
            if later.role == "FEVER_RECHECK":
                later.role = "FEVER_CONFIRMED"
            if later in state.undecided:
                state.undecided.remove(later)
            return FeverOutcome("FEVER_CONFIRMED", reading, later, True)
        return None  # part of a fever episode already decided

    def _index(self, key: str, reading: Reading) -> None:
        if not key.startswith("device:"):
            self._instants[(reading.device_id, reading.event_time)] = key

    def _adopt(self, store_key: str, key: str, reading: Reading, window_ms: int) -> None:
        """A named reading whose instant was seen first without a subject (the gate's reading
        before its scan): move that reading from the device's sequence to the subject's and
        decide it there as if it had come with the subject (outcomes in ``adopted``; its own
        FEVER_RECHECK was raised already)."""
        device_key = self._prefix + "device:" + reading.device_id
        store = self._store
        dstate = self._get(device_key)
        if dstate is None:
            return
        t = reading.event_time
        if not any(r.event_time == t for r in dstate.recent) and not any(
            r.event_time == t for r in dstate.undecided
        ):
            return
        moved = [r for r in dstate.recent if r.event_time == t]
        moved += [r for r in dstate.undecided if r.event_time == t and r not in moved]
        if not moved:
            return
        dstate.recent = [r for r in dstate.recent if r.event_time != t]
        dstate.undecided = [r for r in dstate.undecided if r.event_time != t]
        if dstate.recent or dstate.undecided:
            store.touch(device_key)
        else:
            del store[device_key]
            self._keys.discard(device_key)
        state = store.get(store_key)
        if state is None:
            state = _KeyState(None)
            store[store_key] = state
            self._keys.add(store_key)
        else:
            store.touch(store_key)
        for r in moved:
            r.subject_id = reading.subject_id
            if r.high and r.status == MISSED:
                r.status = OPEN
            announced = r.announced
            r.announced = True  # decided now, under its subject
            outcome = self._decide(store_key, key, state, r, window_ms)
            if outcome is None:
                continue
            if outcome.alert_type == "FEVER_RECHECK" and outcome.first is r:
                if not announced:
                    self.adopted.append(outcome)
                continue
            self.adopted.append(outcome._replace(opened=outcome.opened and not announced))

    def _open(
        self, store_key: str, state: _KeyState, reading: Reading, window_ms: int
    ) -> FeverOutcome | None:
        reading.status = OPEN
        reading.role = "FEVER_RECHECK"
        reading.deadline = reading.event_time + window_ms
        state.undecided.append(reading)
        self._seq += 1
        heapq.heappush(self._deadlines, (reading.deadline, self._seq, store_key, reading))
        if not reading.announced:
            self._seq += 1
            heapq.heappush(self._announce, (reading.event_time, self._seq, store_key, reading))
            return None
        return FeverOutcome("FEVER_RECHECK", reading, None)

    def announce_due(self, until_ms: int) -> list[Reading]:
        """Deferred high readings (``announced`` False: handheld ones) at or before
        ``until_ms`` that no earlier reading has decided since: their FEVER_RECHECK is due."""
        due: list[Reading] = []
        heap = self._announce
        store = self._store
        while heap and heap[0][0] <= until_ms:
            _, _, store_key, reading = heapq.heappop(heap)
            state = store.get(store_key)
            if (
                not reading.announced
                and state is not None
                and any(r is reading for r in state.undecided)
            ):
                reading.announced = True
                store.touch(store_key)
                due.append(reading)
        return due

    def close_due(self, until_ms: int) -> list[Reading]:
        """Open rechecks whose window ended at or before ``until_ms``: marked MISSED and returned.
        A recheck arriving later (within lateness) can still confirm or clear them."""
        missed: list[Reading] = []
        heap = self._deadlines
        store = self._store
        while heap and heap[0][0] <= until_ms:
            _, _, store_key, reading = heapq.heappop(heap)
            state = store.get(store_key)
            if (
                reading.status == OPEN
                and state is not None
                and any(r is reading for r in state.undecided)
            ):
                reading.status = MISSED
                store.touch(store_key)
                missed.append(reading)
        return missed

    def expire(self, before_ms: int) -> int:
        """Drop readings older than ``before_ms`` (open rechecks are kept until closed)."""
        dropped = 0
        store = self._store
        for store_key in list(self._keys):
            state = store.get(store_key)
            if state is None:
                self._keys.discard(store_key)
                continue
            undecided = [
                r for r in state.undecided if r.event_time >= before_ms or r.status == OPEN
            ]
            recent = [r for r in state.recent if r.event_time >= before_ms]
            n = len(state.recent) - len(recent)
            if n == 0 and len(undecided) == len(state.undecided):
                continue
            dropped += n
            if not undecided and not recent:
                del store[store_key]
                self._keys.discard(store_key)
                continue
            state.undecided = undecided
            state.recent = recent
            store.touch(store_key)
        if dropped:
            self._instants = {k: v for k, v in self._instants.items() if k[1] >= before_ms}
        return dropped

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def open_count(self) -> int:
        store = self._store
        n = 0
        for k in self._keys:
            state = store.get(k)
            if state is not None:
                n += sum(1 for r in state.undecided if r.status == OPEN)
        return n


def _undecided_before(undecided: list[Reading], t: int, window_ms: int) -> Reading | None:
    """The earliest undecided high reading r with r.t < t ≤ r.t + window."""
    found: Reading | None = None
    for r in undecided:
        if r.event_time < t <= r.event_time + window_ms and (
            found is None or r.event_time < found.event_time
        ):
            found = r
    return found


def _earliest_after(
    history: list[Reading], reading: Reading, t: int, window_ms: int
) -> Reading | None:
    """The earliest reading r with t < r.t ≤ t + window (a recheck that arrived first)."""
    found: Reading | None = None
    for r in history:
        if (
            r is not reading
            and t < r.event_time <= t + window_ms
            and (found is None or r.event_time < found.event_time)
        ):
            found = r
    return found
