"""The roster as the dispatcher holds it: staff, duty shifts and escalation policies, applied
from their compacted reference topics, and the one question routing asks — who is on duty for
this alert at this time, at this level?

Times of shifts and quiet hours are local to the community's time zone (the policy's
``timezone``, else the default). Pure: no clock, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from streams.dispatch.contacts import ContactBox, Contacts, ContactsUnreadable

SEVERITY_RANK = {"INFO": 0, "WARNING": 1, "CRITICAL": 2}
#: alert types paged to the street office (街道, staff role STREET_OFFICE over the community's
#: area code) at every step, beside the community's own on-duty staff (issue 20)
STREET_OFFICE_TYPES = frozenset({"CLUSTER_SUSPECTED"})
EPOCH = dt.date(1970, 1, 1)
MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class Staff:
    staff_id: str
    community_id: str
    display_name: str
    role: str
    contacts: Contacts
    active: bool = True


@dataclass(frozen=True)
class Shift:
    shift_id: str
    community_id: str
    staff_id: str
    level: int
    gates: frozenset[str]
    alert_types: frozenset[str]
    min_severity: str
    weekdays: frozenset[int]
    dates: frozenset[dt.date]
    start_minute: int
    end_minute: int
    active: bool = True

    def covers(self, gate_id: str | None, alert_type: str, severity: str) -> bool:
        if not self.active:
            return False
        if self.gates and gate_id not in self.gates:
            return False
        if self.alert_types and alert_type not in self.alert_types:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(self.min_severity, 0)

    def _starts_on(self, day: dt.date) -> bool:
        if self.dates:
            return day in self.dates
        return not self.weekdays or day.isoweekday() in self.weekdays

    def on_at(self, local: dt.datetime) -> bool:
        """Whether ``local`` (aware, in the community's zone) is inside this shift."""
        minute = local.hour * 60 + local.minute
        overnight = self.end_minute <= self.start_minute
        today, yesterday = local.date(), local.date() - dt.timedelta(days=1)
        if overnight:
            if minute >= self.start_minute and self._starts_on(today):
                return True
            return minute < self.end_minute and self._starts_on(yesterday)
        return self.start_minute <= minute < self.end_minute and self._starts_on(today)


@dataclass(frozen=True)
class Step:
    level: int
    after_s: int
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    community_id: str
    timezone: str = "Asia/Shanghai"
    steps: tuple[Step, ...] = (Step(1, 0, ()), Step(2, 600, ()))
    repeat_interval_s: int = 1800
    max_repeats: int = 24
    group_wait_s: int = 30
    immediate_severities: frozenset[str] = frozenset({"CRITICAL"})
    quiet_start_minute: int | None = None
    quiet_end_minute: int | None = None
    bypass_quiet_severities: frozenset[str] = frozenset({"CRITICAL"})
    silenced_types: frozenset[str] = frozenset()
    ack_link_ttl_s: int = 86400

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def quiet_release_ms(self, at_ms: int, severity: str) -> int:
        """``at_ms`` unless it falls in quiet hours for ``severity``: then the end of them."""
        start, end = self.quiet_start_minute, self.quiet_end_minute
        if start is None or end is None or start == end or severity in self.bypass_quiet_severities:
            return at_ms
        local = dt.datetime.fromtimestamp(at_ms / 1000, self.zone)
        minute = local.hour * 60 + local.minute
        inside = (start <= minute < end) if start < end else (minute >= start or minute < end)
        if not inside:
            return at_ms
        release_day = local.date()
        if start > end and minute >= start:
            release_day += dt.timedelta(days=1)
        release = dt.datetime.combine(release_day, dt.time(end // 60, end % 60), tzinfo=self.zone)
        return int(release.timestamp() * 1000)


def policy_from_record(record: Mapping[str, Any]) -> Policy:
    steps = tuple(
        sorted(
            (
                Step(int(s["level"]), int(s["after_s"]), tuple(s["channels"]))
                for s in record["steps"]
            ),
            key=lambda s: s.after_s,
        )
    )
    return Policy(
        community_id=record["community_id"],
        timezone=record.get("timezone", "Asia/Shanghai"),
        steps=steps or Policy(record["community_id"]).steps,
        repeat_interval_s=int(record.get("repeat_interval_s", 1800)),
        max_repeats=int(record.get("max_repeats", 24)),
        group_wait_s=int(record.get("group_wait_s", 30)),
        immediate_severities=frozenset(record.get("immediate_severities", ["CRITICAL"])),
        quiet_start_minute=record.get("quiet_start_minute"),
        quiet_end_minute=record.get("quiet_end_minute"),
        bypass_quiet_severities=frozenset(record.get("bypass_quiet_severities", ["CRITICAL"])),
        silenced_types=frozenset(record.get("silenced_types", [])),
        ack_link_ttl_s=int(record.get("ack_link_ttl_s", 86400)),
    )


def shift_from_record(record: Mapping[str, Any]) -> Shift:
    return Shift(
        shift_id=record["shift_id"],
        community_id=record["community_id"],
        staff_id=record["staff_id"],
        level=int(record.get("level", 1)),
        gates=frozenset(record.get("gates", [])),
        alert_types=frozenset(record.get("alert_types", [])),
        min_severity=record.get("min_severity", "INFO"),
        weekdays=frozenset(int(d) for d in record.get("weekdays", [])),
        dates=frozenset(EPOCH + dt.timedelta(days=int(d)) for d in record.get("dates", [])),
        start_minute=int(record["start_minute"]),
        end_minute=int(record["end_minute"]),
        active=bool(record.get("active", True)),
    )


@dataclass
class Roster:
    """Reference data of every community, updated record by record (latest wins)."""

    box: ContactBox
    default_timezone: str = "Asia/Shanghai"
    staff: dict[str, Staff] = field(default_factory=dict)
    shifts: dict[str, Shift] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    unreadable: int = 0  # staff records whose contacts did not decrypt (wrong key)

    def apply_staff(self, staff_id: str, record: Mapping[str, Any] | None) -> None:
        if record is None:
            self.staff.pop(staff_id, None)
            return
        try:
            contacts = self.box.open(record["contacts"], record["staff_id"], record["community_id"])
        except ContactsUnreadable:
            self.unreadable += 1
            contacts = Contacts()  # still routable: paged by name in the group, no mention
        self.staff[staff_id] = Staff(
            staff_id=record["staff_id"],
            community_id=record["community_id"],
            display_name=record["display_name"],
            role=record["role"],
            contacts=contacts,
            active=bool(record.get("active", True)),
        )

    def apply_shift(self, shift_id: str, record: Mapping[str, Any] | None) -> None:
        if record is None:
            self.shifts.pop(shift_id, None)
        else:
            self.shifts[shift_id] = shift_from_record(record)

    def apply_policy(self, community_id: str, record: Mapping[str, Any] | None) -> None:
        if record is None:
            self.policies.pop(community_id, None)
        else:
            self.policies[community_id] = policy_from_record(record)

    def policy(self, community_id: str) -> Policy:
        found = self.policies.get(community_id)
        return found or Policy(community_id, timezone=self.default_timezone)

    def _shifts_of(self, community_id: str) -> Iterable[Shift]:
        return (s for s in self.shifts.values() if s.community_id == community_id)

    def on_duty(
        self,
        community_id: str,
        gate_id: str | None,
        alert_type: str,
        severity: str,
        level: int,
        at_ms: int,
    ) -> list[Staff]:
        """Active staff whose shift at ``level`` covers the alert at ``at_ms`` (by staff id)."""
        local = dt.datetime.fromtimestamp(at_ms / 1000, self.policy(community_id).zone)
        found: dict[str, Staff] = {}
        for shift in self._shifts_of(community_id):
            if shift.level != level or not shift.covers(gate_id, alert_type, severity):
                continue
            person = self.staff.get(shift.staff_id)
            if person is None or not person.active or shift.staff_id in found:
                continue
            if shift.on_at(local):
                found[shift.staff_id] = person
        return [found[k] for k in sorted(found)]

    def street_office(self, community_id: str) -> list[Staff]:
        """Active STREET_OFFICE staff whose area (characters 3–8 of their credit code, as the
        console's county scope) holds ``community_id``, by staff id. No shift needed: the
        street office's duty room is the addressee (docs/dispatch.md)."""
        area = community_id[2:8]
        found = [
            s
            for s in self.staff.values()
            if s.active and s.role == "STREET_OFFICE" and s.community_id[2:8] == area
        ]
        return sorted(found, key=lambda s: s.staff_id)

    def recipients(
        self,
        community_id: str,
        gate_id: str | None,
        alert_type: str,
        severity: str,
        level: int,
        at_ms: int,
    ) -> tuple[int, list[Staff]]:
        """Who gets a step at ``level``: the level's on-duty staff, else the next level up
        with anyone on duty, else the nearest level below — an alert is never dropped for want
        of a recipient. ``(level, [])`` when nobody at all is on duty."""
        levels = sorted({s.level for s in self._shifts_of(community_id)})
        order = [lv for lv in levels if lv >= level] + [lv for lv in reversed(levels) if lv < level]
        for candidate in order:
            people = self.on_duty(community_id, gate_id, alert_type, severity, candidate, at_ms)
            if people:
                return candidate, people
        return level, []
