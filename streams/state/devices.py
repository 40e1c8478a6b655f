"""Device health: the state object for silent and drifting devices.

One ``CommunityDevices`` (``streams.rules.device_health``) per community over one shared store
``devices`` (key ``community|device``). ``observe`` records a device's activity and its readings
in the drift window (DEVICE_DRIFT, window-suppressed per device); ``close`` finds devices silent
in *event time* — nothing from them for ``device_silent_s`` while the community's time moved on
past the allowed lateness — so a backlog or a restart decides silence from the events alone;
``tick`` finds silences by the wall clock for communities from which nothing arrives at all
(a whole site offline); ``expire`` forgets devices long gone.
"""

from __future__ import annotations

from typing import Any

from streams.rules import alerts as A
from streams.rules.config import CommunityRules
from streams.rules.device_health import CommunityDevices, DeviceState, device_store
from streams.rules.timeutil import MS_PER_SECOND
from streams.state.alerter import Alerter, fmt_c
from streams.state.store import KeyedStore


class DeviceHealth:
    __slots__ = ("_by_cid", "store")

    def __init__(self) -> None:
        self.store: KeyedStore[DeviceState] = device_store()
        self._by_cid: dict[str, CommunityDevices] = {}

    def community(self, cid: str) -> CommunityDevices:
        devices = self._by_cid.get(cid)
        if devices is None:
            devices = self._by_cid[cid] = CommunityDevices(self.store, cid + "|")
        return devices

    def restored(self, key: str) -> None:
        cid, _, device_id = key.partition("|")
        self.community(cid).restored(device_id)

    def communities(self) -> list[str]:
        return list(self._by_cid)

    def seen(self, cid: str, device_id: str, gate_id: str, t: int, watched: bool) -> DeviceState:
        dev = self.community(cid).seen(cid, device_id, gate_id, t)
        if watched and not dev.watched:
            dev.watched = True
        return dev

    def observe(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        dev: DeviceState,
        event_id: str,
        t: int,
        temperature_c: float,
        plausible: bool,
        created_at: int,
    ) -> None:
        """A reading into the drift window; DEVICE_DRIFT when the device is off the others."""
        devices = self.community(cid)
        window_ms = rules.drift_window_s * MS_PER_SECOND
        devices.add_sample(dev, t, temperature_c, plausible, t - window_ms)
        if not devices.drift_due(dev, t):
            return
        drift = devices.drift(dev, rules.drift_margin_c, t - window_ms)
        if drift is None:
            return
        alerter.emit(
            alerts,
            alert_type=A.DEVICE_DRIFT,
            severity=A.WARNING,
            community_id=cid,
            cause=dev.device_id + "|" + event_id,
            sources=[event_id],
            event_time=t,
            created_at=created_at,
            suppress_key="device:" + dev.device_id,
            window_ms=rules.alert_suppression_s * MS_PER_SECOND,
            gate_id=dev.gate_id,
            device_id=dev.device_id,
            details={
                "device_mean_c": fmt_c(drift.device_mean_c),
                "others_mean_c": fmt_c(drift.others_mean_c),
                "delta_c": fmt_c(drift.device_mean_c - drift.others_mean_c),
                "device_readings": str(drift.device_readings),
                "other_readings": str(drift.other_readings),
                "other_devices": str(drift.other_devices),
                "window_min": f"{rules.drift_window_s / 60:g}",
            },
        )

    def close(
        self,
        alerts: list[dict[str, Any]],
        alerter: Alerter,
        rules: CommunityRules,
        cid: str,
        until_ms: int,
        created_at: int | None,
    ) -> None:
        """DEVICE_SILENT for established watched devices with nothing after
        ``until_ms - device_silent_s`` (``until_ms``: event time minus lateness, or the wall
        clock in ``tick``)."""
        devices = self._by_cid.get(cid)
        if devices is None:
            return
        silent_ms = rules.device_silent_s * MS_PER_SECOND
        found = devices.newly_silent(until_ms, silent_ms)
        found.sort(key=lambda f: (f[0].device_id, f[1]))
        for dev, since in found:
            alerter.emit(
                alerts,
                alert_type=A.DEVICE_SILENT,
                severity=A.WARNING,
                community_id=cid,
                cause=f"{dev.device_id}|{since}",
                sources=[],
                event_time=since + silent_ms,
                created_at=since + silent_ms if created_at is None else created_at,
                gate_id=dev.gate_id,
                device_id=dev.device_id,
                details={
                    "last_seen": str(since),
                    "silent_min": f"{rules.device_silent_s / 60:g}",
                },
            )

    def expire(self, cid: str, horizon_ms: int, forget_before_ms: int) -> int:
        devices = self._by_cid.get(cid)
        if devices is None:
            return 0
        devices.expire(horizon_ms)
        return devices.forget(forget_before_ms)

    def count(self) -> int:
        return len(self.store)
