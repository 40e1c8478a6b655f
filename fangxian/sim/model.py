"""The simulator's model: the contract defaults it follows, the communities' shape (counties,
gates, residents, passes, vehicles), the daily arrival profile, and the ``Scenario`` record of a
scripted situation. No randomness here beyond the helpers the generators call."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from schemas import contract

Event = dict[str, Any]

#: alert types a simulated stream cannot cause: OTHER, DEVICE_CLOCK_SKEW (needs a device
#: clock ahead of the Kafka timestamp; a stream produced in real time has none — the engine's
#: tests cover it) and EDGE_FALLBACK_DISAGREED (raised by the gate edge, not the decide stage —
#: tests/integration/test_edge_*.py cover it)
NOT_SIMULATED: tuple[str, ...] = (
    "OTHER",
    "DEVICE_CLOCK_SKEW",
    "EDGE_FALLBACK_DISAGREED",
)
#: subject types that are persons: their passes alternate IN and OUT (a person is outside until
#: their first pass), so IN − OUT is the persons inside (issue 20)
PERSONS: frozenset[str] = frozenset({"RESIDENT", "VISITOR", "STAFF"})
#: every alert type a scripted run causes: the contract's AlertType except NOT_SIMULATED
ALERT_TYPES: tuple[str, ...] = tuple(t for t in contract.ALERT_TYPES if t not in NOT_SIMULATED)

# CommunityRules defaults, exactly as the contract's table.
DEFAULT_RULES: dict[str, Any] = contract.field_defaults("CommunityRules")  # the contract's

TIMEZONE = "Asia/Shanghai"
DEFAULT_DAY = dt.date(2020, 2, 10)
DEFAULT_START_MS = int(
    dt.datetime.combine(DEFAULT_DAY, dt.time(), tzinfo=ZoneInfo(TIMEZONE)).timestamp() * 1000
)
# scripted_day(): 05:40 → 10:20 local covers the end of a 22:00–06:00 curfew, the morning peak
# and the 10:00 report deadline.
SCRIPTED_START = dt.time(5, 40)
SCRIPTED_DURATION_S = 4 * 3600 + 40 * 60
DEFAULT_CURFEW = (22 * 60, 6 * 60)

# County (GB/T 2260) → plate prefix letters used there; Fuzhou, Xiamen and Beijing districts.
COUNTIES: tuple[tuple[str, str, str], ...] = (
    ("350102", "闽", "A"),  # 福州市鼓楼区
    ("110105", "京", "NPQ"),  # 北京市朝阳区
    ("350100", "闽", "A"),  # 福州市
    ("350203", "闽", "D"),  # 厦门市思明区
    ("110108", "京", "FGH"),  # 北京市海淀区
    ("350104", "闽", "A"),  # 福州市仓山区
    ("110101", "京", "ABC"),  # 北京市东城区
    ("350111", "闽", "A"),  # 福州市晋安区
)
# Typical February daytime air temperature, for the devices' ambient readings.
AMBIENT_C = {"闽": 13.0, "京": 0.0}

# Relative arrival rate per local hour (mean 1.0 after normalisation): morning and evening peaks.
# fmt: off
HOURLY_PROFILE_RAW = (
    0.10, 0.05, 0.03, 0.03, 0.05, 0.25, 0.70, 2.20, 2.40, 1.30, 0.90, 1.00,
    1.10, 0.90, 0.80, 0.90, 1.20, 2.10, 2.30, 1.40, 0.90, 0.50, 0.30, 0.15,
)
# fmt: on
HOURLY_PROFILE = tuple(w * 24 / sum(HOURLY_PROFILE_RAW) for w in HOURLY_PROFILE_RAW)
# background events per scan (the scan, plus ~45 % with a temperature reading); rate_per_s
# counts all events, so the scan rate is rate_per_s / this.
EVENTS_PER_SCAN = 1.45

SYMPTOMS = contract.SYMPTOMS
_PLATE_SERIAL = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_MASK128 = (1 << 128) - 1
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & _MASK128
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _uuid4(rng: random.Random) -> str:
    """Same text as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, ~3x faster."""
    h = "%032x" % ((rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Scenario:
    """A scripted situation and the alert it should raise (``event_ids``: its source events)."""

    alert_type: str
    community_id: str
    at_ms: int
    event_ids: tuple[str, ...]
    subject_id: str | None = None
    device_id: str | None = None
    note: str = ""


@dataclass
class _Resident:
    resident_id: str
    household_id: str
    status: str
    face_consent: bool
    health_code: str
    observation_start: int | None
    key_groups: list[str]
    building_id: str | None = None  # 楼栋: the first part of the household number


@dataclass
class _Gate:
    gate_id: str
    device_id: str  # INFRARED_GATE, also the scanner
    handheld_id: str  # INFRARED_HANDHELD used for rechecks


@dataclass
class _Pass:
    pass_id: str
    host_resident_id: str
    valid_from: int
    valid_until: int
    max_entries: int
    revoked: bool

    def valid_at(self, t: int) -> bool:
        return not self.revoked and self.valid_from <= t < self.valid_until


@dataclass
class _Vehicle:
    vehicle_id: str
    owner_resident_id: str | None
    valid_until: int | None


@dataclass
class _Community:
    index: int
    community_id: str
    province: str
    ambient_c: float
    gates: list[_Gate]
    residents: list[_Resident]
    passes: list[_Pass]
    vehicles: list[_Vehicle]
    staff_ids: list[str]
    rules: dict[str, Any]
    restricted: bool
    active: list[_Resident] = field(default_factory=list)  # may walk through the gates
    confined: list[_Resident] = field(default_factory=list)  # under observation or isolation
