"""Device health: silent devices and drifting thermometers.

* Silent: a device that was sending (readings or scans) and has sent nothing for longer than
  ``device_silent_s`` — reported once per silence episode, i.e. per gap longer than that between
  two of its events in event time (or after its last one). A gap is judged only once it is final
  (``newly_silent(until, …)``: every event before ``until`` has arrived), so the episodes, and
  their ids (device and the event time the gap starts at), do not depend on how events were
  batched or ordered.
* Drift: over a sliding event-time window of ``drift_window_s``, a device whose mean differs from
  the community's other devices by more than ``drift_margin_c``. The device's own mean includes
  implausible readings (an infrared gun reading 33 °C in the cold is the drift we look for); the
  other devices count with their plausible readings only. Needs ``MIN_READINGS`` readings from the
  device and from each of at least ``MIN_OTHER_DEVICES`` other devices.

  The baseline is the *median* of the other devices' means, and the device must also be off from
  the median of all devices (itself included): one drifting device then cannot make its healthy
  neighbours look drifted, even with only three devices.  Checked at most once per
  ``CHECK_EVERY_MS`` of event time per device, so the hot path stays O(1) per reading.

* A device is *watched* for silence only once it is established: a fixed gate device (scanner or
  infrared gate) that has sent at two different times. A one-off device id (a typo, a test
  device, a forged id) is never reported silent; it is forgotten after the forget horizon.

State: one ``KeyedStore`` (``devices``) shared by every community's ``CommunityDevices``; key
``community|device``; value the device with its readings in the drift window.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from typing import NamedTuple

import orjson

from streams.state.store import KeyedStore

MIN_READINGS = 5
#: A device's event times are kept only where they can bound a silence: a time *b* between
#: neighbours *a* and *c* with ``c - a <= COMPACT_MS`` is dropped. No gap longer than
#: ``device_silent_s`` (at least 1 s, a positive int) can start or end at *b*, and a late event
#: only shortens gaps, so the silences found, and their ids, are those of the full list. Without
#: it a busy gate's list grew with every event (8 bytes each): 40,000 scans at one device made
#: a 1.6 MB changelog record, over Kafka's limit — the decide transaction could never commit.
COMPACT_MS = 1000
MIN_OTHER_DEVICES = 2
CHECK_EVERY_MS = 10_000

_UNKNOWN = -(1 << 62)  # ``CommunityDevices._low`` when it must be found again
_NONE = 1 << 62  # ... when no device holds a sample


class DeviceState:
    """What the engine knows about one device, with its readings in the drift window."""

    __slots__ = (
        "alerted",
        "all_n",
        "all_sum",
        "community_id",
        "device_id",
        "first_seen",
        "gate_id",
        "last_seen",
        "next_check",
        "ok_n",
        "ok_sum",
        "samples",
        "times",
        "watched",
    )

    def __init__(self, community_id: str, device_id: str, gate_id: str, last_seen: int) -> None:
        self.community_id = community_id
        self.device_id = device_id
        self.gate_id = gate_id
        self.first_seen = last_seen
        self.last_seen = last_seen
        self.times: list[int] = [last_seen]  # its recent event times, sorted
        self.alerted: list[int] = []  # starts of the silence gaps already reported
        # fixed gate devices are expected to keep sending; a handheld gun or a contact
        # thermometer is used on demand (rechecks), so its silence means nothing
        self.watched = False
        # sums in hundredths of a degree (ints): exact whatever the order of adds and removes,
        # so a device restored from the changelog decides like the one that saw every reading
        self.all_sum = 0
        self.all_n = 0
        self.ok_sum = 0
        self.ok_n = 0
        self.next_check = 0
        self.samples: deque[tuple[int, float, bool]] = deque()

    @property
    def established(self) -> bool:
        """Sent at two different times (a one-off id is not a device to watch)."""
        return self.last_seen > self.first_seen


def encode_device(dev: DeviceState) -> bytes:
    return orjson.dumps(
        [
            dev.community_id,
            dev.device_id,
            dev.gate_id,
            dev.first_seen,
            dev.last_seen,
            dev.times,
            dev.alerted,
            dev.watched,
            dev.next_check,
            [[t, c, p] for t, c, p in dev.samples],
        ]
    )


def decode_device(raw: bytes) -> DeviceState:
    cid, device_id, gate_id, first, last, times, alerted, watched, next_check, samples = (
        orjson.loads(raw)
    )
    dev = DeviceState(cid, device_id, gate_id, last)
    dev.first_seen = first
    dev.times = times
    dev.alerted = alerted
    dev.watched = watched
    dev.next_check = next_check
    for t, c, p in samples:
        dev.samples.append((t, c, p))
        dev.all_sum += _centi(c)
        dev.all_n += 1
        if p:
            dev.ok_sum += _centi(c)
            dev.ok_n += 1
    return dev


def device_store() -> KeyedStore[DeviceState]:
    return KeyedStore("devices", encode=encode_device, decode=decode_device)


class Drift(NamedTuple):
    device_mean_c: float
    others_mean_c: float
    device_readings: int
    other_readings: int
    other_devices: int


class CommunityDevices:
    """The devices of one community and the drift window over their readings."""

    __slots__ = ("_low", "_prefix", "_store", "devices")

    def __init__(self, store: KeyedStore[DeviceState] | None = None, prefix: str = "") -> None:
        self._store: KeyedStore[DeviceState] = device_store() if store is None else store
        self._prefix = prefix
        self.devices: dict[str, DeviceState] = {}  # the store's values of this community
        # a lower bound of the oldest sample in any device's drift window: ``expire`` of a
        # horizon below it has nothing to do (a drift check expires every device, so without
        # it each reading walked the whole community)
        self._low = _UNKNOWN

    def restored(self, device_id: str) -> None:
        dev = self._store.get(self._prefix + device_id)
        self._low = _UNKNOWN
        if dev is None:
            self.devices.pop(device_id, None)
        else:
            self.devices[device_id] = dev

    def touch(self, dev: DeviceState) -> None:
        self._store.touch(self._prefix + dev.device_id)

    def seen(self, community_id: str, device_id: str, gate_id: str, t: int) -> DeviceState:
        """Record activity of a device at event time ``t``; ends a silence episode."""
        dev = self.devices.get(device_id)
        if dev is None:
            dev = DeviceState(community_id, device_id, gate_id, t)
            self.devices[device_id] = dev
            self._store[self._prefix + device_id] = dev
        else:
            times = dev.times
            if t > dev.last_seen:
                dev.last_seen = t
                if len(times) > 1 and t - times[-2] <= COMPACT_MS:
                    times[-1] = t  # the point between is redundant (see COMPACT_MS)
                else:
                    times.append(t)
            else:
                if t < dev.first_seen:
                    dev.first_seen = t
                i = bisect_left(times, t)
                if i == len(times) or times[i] != t:
                    times.insert(i, t)
                    for j in (i + 1, i, i - 1):  # a late time can make a neighbour redundant
                        if 0 < j < len(times) - 1 and times[j + 1] - times[j - 1] <= COMPACT_MS:
                            del times[j]
            self._store.touch(self._prefix + device_id)
        return dev

    @property
    def ok_n(self) -> int:
        return sum(d.ok_n for d in self.devices.values())

    @property
    def ok_devices(self) -> int:
        return sum(1 for d in self.devices.values() if d.ok_n)

    def add_sample(
        self, dev: DeviceState, t: int, temperature_c: float, plausible: bool, horizon: int
    ) -> None:
        """Add a reading to the drift window; samples at or before ``horizon`` leave it."""
        samples = dev.samples
        if samples and samples[0][0] <= horizon:
            _expire_device(dev, horizon)
        if t <= horizon:
            return
        if samples and t < samples[-1][0]:
            samples.append((t, temperature_c, plausible))
            ordered = sorted(samples, key=lambda s: s[0])
            samples.clear()
            samples.extend(ordered)
        else:
            samples.append((t, temperature_c, plausible))
        if t < self._low:
            self._low = t
        centi = _centi(temperature_c)
        dev.all_sum += centi
        dev.all_n += 1
        if plausible:
            dev.ok_sum += centi
            dev.ok_n += 1
        self._store.touch(self._prefix + dev.device_id)

    def expire(self, horizon: int) -> None:
        if horizon < self._low:
            return
        low = _NONE
        for dev in self.devices.values():
            samples = dev.samples
            if samples and samples[0][0] <= horizon:
                _expire_device(dev, horizon)
                self._store.touch(self._prefix + dev.device_id)
            if samples and samples[0][0] < low:
                low = samples[0][0]
        self._low = low

    def drift(self, dev: DeviceState, margin_c: float, horizon: int | None = None) -> Drift | None:
        """The device's drift against the others if it exceeds ``margin_c`` with enough data
        (``horizon``: first let the other devices' samples at or before it leave the window)."""
        if dev.all_n < MIN_READINGS:
            return None
        if horizon is not None and horizon >= self._low:
            self.expire(horizon)
        others = sorted(
            [
                d.ok_sum / d.ok_n / 100
                for d in self.devices.values()
                if d.ok_n >= MIN_READINGS and d is not dev
            ]
        )
        if len(others) < MIN_OTHER_DEVICES:
            return None
        mean = dev.all_sum / dev.all_n / 100
        baseline = _median(others)
        if abs(mean - baseline) <= margin_c:
            return None
        if abs(mean - _median(sorted([*others, mean]))) <= margin_c:
            return None
        return Drift(mean, baseline, dev.all_n, self.ok_n - dev.ok_n, len(others))

    def drift_due(self, dev: DeviceState, t: int) -> bool:
        """Whether the device's drift should be checked at event time ``t`` (throttled)."""
        if dev.all_n < MIN_READINGS or t < dev.next_check:
            return False
        dev.next_check = t + CHECK_EVERY_MS
        return True

    def newly_silent(self, until_ms: int, silent_ms: int) -> list[tuple[DeviceState, int]]:
        """Silence episodes of established watched devices that are final at ``until_ms`` (every
        event before it has arrived) and not yet reported: (device, start of the gap) — a gap
        longer than ``silent_ms`` between two of its events, or from its last event to
        ``until_ms``. Marks them reported and forgets event times no gap can start at."""
        found: list[tuple[DeviceState, int]] = []
        cutoff = until_ms - silent_ms
        for dev in self.devices.values():
            times = dev.times
            if not dev.watched or not times or times[0] >= cutoff:
                continue
            changed = False
            for i, a in enumerate(times):
                if a >= cutoff:
                    break
                b = times[i + 1] if i + 1 < len(times) else until_ms
                if min(b, until_ms) - a > silent_ms and a > dev.first_seen and a not in dev.alerted:
                    dev.alerted.append(a)
                    found.append((dev, a))
                    changed = True
            keep = bisect_left(times, cutoff) - 1  # the last time before the cutoff stays
            if keep > 0:
                del times[:keep]
                changed = True
            if dev.alerted and dev.alerted[0] < times[0]:
                dev.alerted = [a for a in dev.alerted if a >= times[0]]
                changed = True
            if changed:
                self._store.touch(self._prefix + dev.device_id)
        return found

    def forget(self, before_ms: int) -> int:
        """Drop devices silent since before ``before_ms`` with nothing in the drift window."""
        stale = [
            d for d, dev in self.devices.items() if dev.last_seen < before_ms and dev.all_n == 0
        ]
        for d in stale:
            del self.devices[d]
            self._store.pop(self._prefix + d)
        return len(stale)


def _expire_device(dev: DeviceState, horizon: int) -> None:
    samples = dev.samples
    while samples and samples[0][0] <= horizon:
        _, temperature_c, plausible = samples.popleft()
        centi = _centi(temperature_c)
        dev.all_sum -= centi
        dev.all_n -= 1
        if plausible:
            dev.ok_sum -= centi
            dev.ok_n -= 1
    if dev.all_n == 0:
        dev.all_sum = 0
    if dev.ok_n == 0:
        dev.ok_sum = 0


def _centi(temperature_c: float) -> int:
    return int(temperature_c * 100 + 0.5)


def _median(values: list[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
