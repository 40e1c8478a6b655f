"""Device health: silent devices and drifting thermometers.

* Silent: a device that was sending (readings or scans) and has sent nothing for longer than
  ``device_silent_s`` — reported once per silence episode; the next event from it ends the episode.
* Drift: over a sliding event-time window of ``drift_window_s``, a device whose mean differs from
  the community's other devices by more than ``drift_margin_c``. The device's own mean includes
  implausible readings (an infrared gun reading 33 °C in the cold is the drift we look for); the
  other devices count with their plausible readings only. Needs ``MIN_READINGS`` readings from the
  device and from each of at least ``MIN_OTHER_DEVICES`` other devices.

  The baseline is the *median* of the other devices' means, and the device must also be off from
  the median of all devices (itself included): one drifting device then cannot make its healthy
  neighbours look drifted, even with only three devices.  Checked at most once per
  ``CHECK_EVERY_MS`` of event time per device, so the hot path stays O(1) per reading.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

MIN_READINGS = 5
MIN_OTHER_DEVICES = 2
CHECK_EVERY_MS = 10_000


class DeviceState:
    """What the engine knows about one device."""

    __slots__ = (
        "all_n",
        "all_sum",
        "community_id",
        "device_id",
        "gate_id",
        "last_seen",
        "next_check",
        "ok_n",
        "ok_sum",
        "silent",
        "watched",
    )

    def __init__(self, community_id: str, device_id: str, gate_id: str, last_seen: int) -> None:
        self.community_id = community_id
        self.device_id = device_id
        self.gate_id = gate_id
        self.last_seen = last_seen
        self.silent = False
        # fixed gate devices are expected to keep sending; a handheld gun or a contact
        # thermometer is used on demand (rechecks), so its silence means nothing
        self.watched = False
        self.all_sum = 0.0
        self.all_n = 0
        self.ok_sum = 0.0
        self.ok_n = 0
        self.next_check = 0


class Drift(NamedTuple):
    device_mean_c: float
    others_mean_c: float
    device_readings: int
    other_readings: int
    other_devices: int


class CommunityDevices:
    """The devices of one community and the drift window over their readings."""

    __slots__ = ("_samples", "devices", "ok_devices", "ok_n", "ok_sum")

    def __init__(self) -> None:
        self.devices: dict[str, DeviceState] = {}
        self._samples: deque[tuple[int, DeviceState, float, bool]] = deque()
        self.ok_sum = 0.0
        self.ok_n = 0
        self.ok_devices = 0  # devices with at least one plausible reading in the window

    def seen(self, community_id: str, device_id: str, gate_id: str, t: int) -> DeviceState:
        """Record activity of a device at event time ``t``; ends a silence episode."""
        dev = self.devices.get(device_id)
        if dev is None:
            dev = DeviceState(community_id, device_id, gate_id, t)
            self.devices[device_id] = dev
        elif t > dev.last_seen:
            dev.last_seen = t
            dev.silent = False
        return dev

    def add_sample(
        self, dev: DeviceState, t: int, temperature_c: float, plausible: bool, horizon: int
    ) -> None:
        """Add a reading to the drift window; samples at or before ``horizon`` leave it."""
        if self._samples and self._samples[0][0] <= horizon:
            self.expire(horizon)
        if t <= horizon:
            return
        self._samples.append((t, dev, temperature_c, plausible))
        dev.all_sum += temperature_c
        dev.all_n += 1
        if plausible:
            if dev.ok_n == 0:
                self.ok_devices += 1
            dev.ok_sum += temperature_c
            dev.ok_n += 1
            self.ok_sum += temperature_c
            self.ok_n += 1

    def expire(self, horizon: int) -> None:
        samples = self._samples
        while samples and samples[0][0] <= horizon:
            _, dev, temperature_c, plausible = samples.popleft()
            dev.all_sum -= temperature_c
            dev.all_n -= 1
            if dev.all_n == 0:
                dev.all_sum = 0.0  # no float residue from add/subtract
            if plausible:
                dev.ok_sum -= temperature_c
                dev.ok_n -= 1
                self.ok_sum -= temperature_c
                self.ok_n -= 1
                if dev.ok_n == 0:
                    dev.ok_sum = 0.0
                    self.ok_devices -= 1
                if self.ok_n == 0:
                    self.ok_sum = 0.0

    def drift(self, dev: DeviceState, margin_c: float) -> Drift | None:
        """The device's drift against the others if it exceeds ``margin_c`` with enough data."""
        if dev.all_n < MIN_READINGS:
            return None
        others = sorted(
            d.ok_sum / d.ok_n
            for d in self.devices.values()
            if d is not dev and d.ok_n >= MIN_READINGS
        )
        if len(others) < MIN_OTHER_DEVICES:
            return None
        mean = dev.all_sum / dev.all_n
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

    def newly_silent(self, now_ms: int, silent_ms: int) -> list[DeviceState]:
        """Devices quiet for more than ``silent_ms`` at ``now_ms`` not yet reported; marks them."""
        found: list[DeviceState] = []
        for dev in self.devices.values():
            if dev.watched and not dev.silent and now_ms - dev.last_seen > silent_ms:
                dev.silent = True
                found.append(dev)
        return found

    def forget(self, before_ms: int) -> int:
        """Drop devices silent since before ``before_ms`` with nothing in the drift window."""
        stale = [
            d for d, dev in self.devices.items() if dev.last_seen < before_ms and dev.all_n == 0
        ]
        for d in stale:
            del self.devices[d]
        return len(stale)


def _median(values: list[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
