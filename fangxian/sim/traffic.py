"""A deterministic simulator of community gates, thermometers and home-observation reports.

``CommunitySimulator`` builds communities (GB 32100 codes with correct check characters on real
Fujian/Beijing county codes), households, residents (synthetic GB 11643 IDs that exist only
long enough to be pseudonymised), gates with an infrared gate device and a handheld gun each,
visitor passes, vehicles and ``CommunityRules``. ``events()`` then yields a day's traffic as
``(record_name, event_dict)`` pairs in event-time order; every dict follows the contract
(``docs/contract.md``) and the conventions of ``docs/ARCHITECTURE.md``. No Kafka here: the
caller encodes and produces.

Everything comes from seeded ``random.Random`` instances, so the same arguments give the same
records and events byte for byte; each ``events()`` call starts from the same seed again.

What a day contains (background, rates are per scan unless noted):
- arrivals follow a daily profile with peaks 07–09 and 17–19 local time;
- residents scan QR / health code (mostly GREEN, the register's YELLOW/RED few), some FACE
  scans (a few by residents without face consent), staff cards, visitors by pass (some passes
  expired or revoked), vehicles by plate (some unregistered or expired), a few unknown subjects;
- IN scans of people are measured by the gate's infrared device: 36.3 ± 0.3 °C, ~0.3 % fevers
  (≥ 37.3) followed within 1–3 min by a handheld recheck that confirms or clears (or, ~15 %, no
  recheck), ~0.2 % implausible cold readings (33.x °C);
- one gate device reads 1.5 °C low all run (``drifting_device_id``), one goes silent partway
  (``silent_device_id``, from ``silent_from_ms(...)``);
- home-observation residents report once per local day, mostly before the deadline, some late,
  some not at all; a few with symptoms or fever;
- now and then a quarantined resident scans OUT;
- in restricted communities (household exit quota + curfew) most households keep the quota.

``ensure_every_alert_type=True`` adds one scripted situation per ``AlertType`` (except OTHER) on
top, listed in ``CommunitySimulator.scenarios`` with the event ids that should cause it; see
``scripted_day()`` for a run that satisfies its time requirements. Two things in that mode are
not background-like: the run opens with the daily reports of the resident whose observation
ended yesterday (event times on the preceding days, as a consumer would find them in
the retained topic) so OBSERVATION_COMPLETED can be decided, and no face scan without consent
happens in the scripted community within ``alert_suppression_s`` of the scripted one (the
rule engine suppresses repeats per device).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fangxian.core.codes import (
    credit_code_check_char,
    organisation_code_check_char,
    resident_id_check_char,
)
from fangxian.core.privacy import Pseudonymiser
from fangxian.sim.capacity import script_capacity
from fangxian.sim.model import (
    _DAY_MS,
    _HOUR_MS,
    _PLATE_SERIAL,
    AMBIENT_C,
    COUNTIES,
    DEFAULT_CURFEW,
    DEFAULT_DAY,
    DEFAULT_RULES,
    DEFAULT_START_MS,
    EVENTS_PER_SCAN,
    HOURLY_PROFILE,
    PERSONS,
    SCRIPTED_DURATION_S,
    SCRIPTED_START,
    SYMPTOMS,
    TIMEZONE,
    Event,
    Scenario,
    _Community,
    _Gate,
    _Pass,
    _Resident,
    _uuid4,
    _Vehicle,
)
from fangxian.sim.scenario import _ScenarioPlanner

log = logging.getLogger(__name__)


def _passed(inside: set[str], scan: Event) -> None:
    """A scripted pass moves its person in or out, so the background alternates after it."""
    if scan["subject_type"] in PERSONS:
        key = scan["community_id"] + "|" + scan["subject_id"]
        if scan["direction"] == "IN":
            inside.add(key)
        else:
            inside.discard(key)


@dataclass(frozen=True)
class ScriptedRun:
    """What ``scripted_day()`` returns: the simulator, the planned situations, the events."""

    simulator: CommunitySimulator
    scenarios: list[Scenario]
    events: Iterator[tuple[str, Event]]


class CommunitySimulator:
    """Builds the reference data of ``community_count`` communities and generates their events.

    The first ``restricted_communities`` communities (default 1) have a household exit quota
    (1 OUT per 48 h, DENY) and a curfew (``curfew`` in local minutes, default 22:00–06:00, WARN);
    the others use the contract defaults.
    """

    def __init__(
        self,
        community_count: int = 2,
        residents_per_community: int = 300,
        seed: int = 0,
        *,
        pseudonymiser_key: bytes = b"fangxian-simulator-not-a-secret",
        start_ms: int = DEFAULT_START_MS,
        restricted_communities: int = 1,
        curfew: tuple[int, int] = DEFAULT_CURFEW,
    ) -> None:
        if community_count < 1 or residents_per_community < 10:
            raise ValueError("need at least 1 community of 10 residents / 至少 1 个社区、10 名居民")
        self.seed = seed
        self.start_ms = start_ms
        self.curfew = curfew
        self._pseudonymiser = Pseudonymiser(pseudonymiser_key)
        self._tz = ZoneInfo(TIMEZONE)
        self.scenarios: list[Scenario] = []
        rng = random.Random(f"fangxian-simulator:{seed}:reference")
        restricted = min(restricted_communities, community_count)
        self.communities = [
            self._build_community(
                rng,
                i,
                residents_per_community,
                restricted=i < restricted,
                # the silent device's community and the drifting one's need two healthy
                # gate devices besides (the drift rule compares with at least two others)
                min_gates=4 if community_count == 1 else 3 if i in (0, community_count - 1) else 2,
            )
            for i in range(community_count)
        ]
        last = self.communities[-1]
        self.drifting_device_id = last.gates[0].device_id
        self.silent_device_id = self.communities[0].gates[-1].device_id
        log.info(
            "simulator: %d communities, %d residents, seed %d",
            community_count,
            sum(len(c.residents) for c in self.communities),
            seed,
        )

    # --- reference data ----------------------------------------------------------------------

    def _offset_ms(self, t_ms: int) -> int:
        moment = dt.datetime.fromtimestamp(t_ms / 1000, self._tz)
        offset = moment.utcoffset()
        return 0 if offset is None else int(offset.total_seconds() * 1000)

    def local_day(self, t_ms: int) -> int:
        """Days since 1970-01-01 of the local date at ``t_ms``."""
        return (t_ms + self._offset_ms(t_ms)) // _DAY_MS

    def _build_community(
        self, rng: random.Random, index: int, size: int, *, restricted: bool, min_gates: int
    ) -> _Community:
        county, province, letters = COUNTIES[index % len(COUNTIES)]
        org8 = f"MA{index:06d}"
        # registration authority 5 = 民政 (civil affairs); the category digit is not checked
        first17 = "55" + county + org8 + organisation_code_check_char(org8)
        community_id = first17 + credit_code_check_char(first17)
        tag = f"C{index:04d}"
        gate_count = rng.randint(min_gates, 4)
        gates = [
            _Gate(f"{tag}-G{g + 1}", f"{tag}-G{g + 1}-IR", f"{tag}-G{g + 1}-HH")
            for g in range(gate_count)
        ]
        start_day = self.local_day(self.start_ms)
        residents = self._build_residents(rng, community_id, county, size, start_day)
        token = self._pseudonymiser.token
        passes = self._build_passes(rng, community_id, residents)
        vehicles = self._build_vehicles(rng, province, letters, residents)
        rules = {"community_id": community_id, **DEFAULT_RULES, "updated_at": self.start_ms}
        if restricted:
            rules.update(
                entry_limit_scope="HOUSEHOLD",
                entry_limit_direction="OUT",
                entry_limit_count=1,
                entry_limit_window_s=172_800,
                entry_limit_action="DENY",
                curfew_start_minute=self.curfew[0],
                curfew_end_minute=self.curfew[1],
                curfew_action="WARN",
            )
        community = _Community(
            index=index,
            community_id=community_id,
            province=province,
            ambient_c=AMBIENT_C[province],
            gates=gates,
            residents=residents,
            passes=passes,
            vehicles=vehicles,
            staff_ids=[token("staff", f"{community_id}-S{k}") for k in range(4)],
            rules=rules,
            restricted=restricted,
        )
        community.active = [r for r in residents if r.status in ("NORMAL", "RECOVERED")]
        community.confined = [
            r for r in residents if r.status in ("HOME_OBSERVATION", "CENTRALIZED_ISOLATION")
        ]
        return community

    def _build_residents(
        self, rng: random.Random, community_id: str, county: str, size: int, start_day: int
    ) -> list[_Resident]:
        token = self._pseudonymiser.token
        seen: set[str] = set()
        residents: list[_Resident] = []
        while len(residents) < size:
            household_no = f"{rng.randint(1, 30)}-{rng.randint(1, 4)}{rng.randint(1, 30):02d}"
            household_id = token("household", community_id + household_no)
            if household_id in seen:
                continue
            seen.add(household_id)
            for _ in range(min(rng.randint(1, 5), size - len(residents))):
                residents.append(self._build_resident(rng, county, household_id, start_day))
                residents[-1].building_id = household_no.partition("-")[0]
        # every community has people to observe, isolate and finish observation today
        statuses = [r.status for r in residents]
        normal = [r for r in residents if r.status == "NORMAL"]
        for status, minimum in (("HOME_OBSERVATION", 4), ("CENTRALIZED_ISOLATION", 1)):
            for r in normal[: max(0, minimum - statuses.count(status))]:
                r.status = status
                r.observation_start = start_day - rng.randint(1, 10)
                r.health_code = "YELLOW" if status == "HOME_OBSERVATION" else "RED"
            normal = [r for r in normal if r.status == "NORMAL"]
        # and someone walking about with a YELLOW and a RED health code
        codes = [r.health_code for r in normal]
        for r, code in zip(normal[-2:], ("YELLOW", "RED"), strict=False):
            if code not in codes:
                r.health_code = code
        observing = [r for r in residents if r.status == "HOME_OBSERVATION"]
        # yesterday was the last day of this one's observation period (completed once
        # the period is over, issue 9)
        observing[0].observation_start = start_day - DEFAULT_RULES["observation_days"]
        return residents

    def _build_resident(
        self, rng: random.Random, county: str, household_id: str, start_day: int
    ) -> _Resident:
        age = int(rng.triangular(0, 95, 40))
        today = dt.date(1970, 1, 1) + dt.timedelta(days=start_day)
        born = today - dt.timedelta(days=int(age * 365.25) + rng.randint(0, 364))
        first17 = f"{county}{born:%Y%m%d}{rng.randint(0, 999):03d}"
        id_number = first17 + resident_id_check_char(first17)
        roll = rng.random()
        status = (
            "HOME_OBSERVATION"
            if roll < 0.02
            else "CENTRALIZED_ISOLATION"
            if roll < 0.025
            else "HOSPITALIZED"
            if roll < 0.027
            else "RECOVERED"
            if roll < 0.04
            else "NORMAL"
        )
        observation_start = None
        code = "GREEN"
        if status in ("HOME_OBSERVATION", "CENTRALIZED_ISOLATION"):
            observation_start = start_day - rng.randint(0, 12)
            code = "YELLOW" if status == "HOME_OBSERVATION" else "RED"
        elif status == "HOSPITALIZED":
            code = "RED"
        else:
            code_roll = rng.random()
            code = "RED" if code_roll < 0.003 else "YELLOW" if code_roll < 0.018 else "GREEN"
        groups: list[str] = []
        if age >= 65:
            groups.append("ELDERLY")
        if age < 14:
            groups.append("CHILD")
        if 20 <= age <= 40 and int(first17[16]) % 2 == 0 and rng.random() < 0.04:
            groups.append("PREGNANT")
        if rng.random() < (0.25 if age >= 60 else 0.04):
            groups.append("CHRONIC_DISEASE")
        if rng.random() < 0.015:
            groups.append("DISABLED")
        return _Resident(
            resident_id=self._pseudonymiser.token("resident", id_number),
            household_id=household_id,
            status=status,
            face_consent=rng.random() < 0.7,
            health_code=code,
            observation_start=observation_start,
            key_groups=groups,
        )

    def _build_passes(
        self, rng: random.Random, community_id: str, residents: Sequence[_Resident]
    ) -> list[_Pass]:
        token = self._pseudonymiser.token
        hosts = [r for r in residents if r.status in ("NORMAL", "RECOVERED")]
        passes = []
        for k in range(max(6, len(residents) // 25)):
            kind = k % 10  # 0: expired, 1: revoked, others valid
            valid_from = self.start_ms - rng.randint(1, 72) * _HOUR_MS
            valid_until = self.start_ms + rng.randint(24, 7 * 24) * _HOUR_MS
            if kind == 0:
                valid_until = self.start_ms - rng.randint(1, 48) * _HOUR_MS
                valid_from = valid_until - rng.randint(4, 72) * _HOUR_MS
            passes.append(
                _Pass(
                    pass_id=token("pass", f"{community_id}V{k:05d}"),
                    host_resident_id=rng.choice(hosts).resident_id,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    max_entries=rng.randint(4, 30),
                    revoked=kind == 1,
                )
            )
        return passes

    def _build_vehicles(
        self, rng: random.Random, province: str, letters: str, residents: Sequence[_Resident]
    ) -> list[_Vehicle]:
        token = self._pseudonymiser.token
        owners = [r for r in residents if r.status in ("NORMAL", "RECOVERED")]
        vehicles = []
        for k in range(max(4, len(residents) // 8)):
            if rng.random() < 0.2:  # new energy, small car: D/F + one serial char + 4 digits
                serial = (
                    rng.choice("DF") + rng.choice(_PLATE_SERIAL) + f"{rng.randint(0, 9999):04d}"
                )
            else:
                serial = "".join(rng.choice(_PLATE_SERIAL) for _ in range(5))
            plate = province + rng.choice(letters) + serial
            valid_until: int | None = None
            if k % 20 == 0:
                valid_until = self.start_ms - rng.randint(1, 30) * _DAY_MS  # registration lapsed
            elif rng.random() < 0.4:
                valid_until = self.start_ms + rng.randint(30, 365) * _DAY_MS
            vehicles.append(
                _Vehicle(token("plate", plate), rng.choice(owners).resident_id, valid_until)
            )
        return vehicles

    def reference_records(self) -> dict[str, list[Event]]:
        """Residents, passes, vehicles and rules as contract records (fresh dicts each call)."""
        updated_at = self.start_ms
        records: dict[str, list[Event]] = {
            "residents": [],
            "passes": [],
            "vehicles": [],
            "rules": [],
        }
        for c in self.communities:
            records["residents"] += [
                {
                    "resident_id": r.resident_id,
                    "community_id": c.community_id,
                    "household_id": r.household_id,
                    "status": r.status,
                    "observation_start": r.observation_start,
                    "key_groups": list(r.key_groups),
                    "face_consent": r.face_consent,
                    "updated_at": updated_at,
                    "building_id": r.building_id,
                }
                for r in c.residents
            ]
            # community staff are registered like residents (the engine looks STAFF up in the
            # register); their own household token keeps them out of residents' quotas
            records["residents"] += [
                {
                    "resident_id": staff_id,
                    "community_id": c.community_id,
                    "household_id": staff_id,
                    "status": "NORMAL",
                    "observation_start": None,
                    "key_groups": ["STAFF"],
                    "face_consent": False,
                    "updated_at": updated_at,
                    "building_id": None,
                }
                for staff_id in c.staff_ids
            ]
            records["passes"] += [
                {
                    "pass_id": p.pass_id,
                    "community_id": c.community_id,
                    "host_resident_id": p.host_resident_id,
                    "valid_from": p.valid_from,
                    "valid_until": p.valid_until,
                    "max_entries": p.max_entries,
                    "revoked": p.revoked,
                    "updated_at": updated_at,
                }
                for p in c.passes
            ]
            records["vehicles"] += [
                {
                    "vehicle_id": v.vehicle_id,
                    "community_id": c.community_id,
                    "owner_resident_id": v.owner_resident_id,
                    "valid_until": v.valid_until,
                    "updated_at": updated_at,
                }
                for v in c.vehicles
            ]
            records["rules"].append(dict(c.rules))
        return records

    # --- events ------------------------------------------------------------------------------

    def silent_from_ms(self, duration_s: float) -> int | None:
        """When ``silent_device_id`` stops in a run of ``duration_s``: 40 % in, but early enough
        that the silence lasts ``device_silent_s`` + 2 min; None when the run is too short."""
        end = self.start_ms + int(duration_s * 1000)
        needed = (DEFAULT_RULES["device_silent_s"] + 120) * 1000
        silent_from = min(self.start_ms + int(duration_s * 400), end - needed)
        return silent_from if silent_from >= self.start_ms + 60_000 else None

    def events(
        self,
        duration_s: float,
        rate_per_s: float,
        *,
        ensure_every_alert_type: bool = False,
    ) -> Iterator[tuple[str, Event]]:
        """``(record_name, event)`` pairs from ``start_ms`` for ``duration_s`` simulated seconds.

        ``rate_per_s`` is the mean number of events per simulated second over a whole day; the
        hourly profile makes the morning peak about twice that and the small hours a tenth.
        With ``ensure_every_alert_type`` the scripted situations are planned first (see
        ``scenarios``); ``ValueError`` says what the run window lacks for them.
        """
        if duration_s <= 0 or rate_per_s <= 0:
            raise ValueError("duration_s and rate_per_s must be positive")
        rng = random.Random(f"fangxian-simulator:{self.seed}:events")
        end_ms = self.start_ms + int(duration_s * 1000)
        silent_from = self.silent_from_ms(duration_s)
        pending: list[tuple[int, int, str, Event]] = []
        skip_reports: set[tuple[str, int]] = set()
        history: list[Event] = []
        face_quiet: tuple[str, int, int] | None = None
        self.scenarios = []
        if ensure_every_alert_type:
            plan = _ScenarioPlanner(self, rng, end_ms, silent_from)
            self.scenarios = plan.plan()
            pending, skip_reports, history = plan.pending, plan.skip_reports, plan.history
            face_quiet = plan.face_quiet
        self._schedule_reports(rng, end_ms, pending, skip_reports)
        heapq.heapify(pending)
        background = self._generate(rng, end_ms, rate_per_s, silent_from, pending, face_quiet)
        if not history:
            return background
        return itertools.chain((("HealthReport", e) for e in history), background)

    def _schedule_reports(
        self,
        rng: random.Random,
        end_ms: int,
        pending: list[tuple[int, int, str, Event]],
        skip: set[tuple[str, int]],
    ) -> None:
        """Daily reports of home-observation residents: ~85 % before the deadline (07:00–09:55),
        ~7 % late (10:05–16:00), ~8 % missing."""
        first_day, last_day = self.local_day(self.start_ms), self.local_day(end_ms)
        for c in self.communities:
            for r in c.residents:
                if r.status != "HOME_OBSERVATION":
                    continue
                for day in range(first_day, last_day + 1):
                    roll = rng.random()
                    if (r.resident_id, day) in skip or roll >= 0.92:
                        continue
                    minute = rng.uniform(420, 595) if roll < 0.85 else rng.uniform(605, 960)
                    at = self._local_ms(day, minute)
                    if not self.start_ms <= at < end_ms:
                        continue
                    report = self._health_report(rng, c, r, at, day)
                    pending.append((at, len(pending), "HealthReport", report))

    def _local_ms(self, day: int, minute: float) -> int:
        approx = day * _DAY_MS + int(minute * 60_000)
        return approx - self._offset_ms(approx)

    def _health_report(
        self,
        rng: random.Random,
        c: _Community,
        r: _Resident,
        at: int,
        day: int,
        *,
        temperature_c: float | None = None,
        symptoms: list[str] | None = None,
    ) -> Event:
        if temperature_c is None:
            temperature_c = (
                round(rng.uniform(37.3, 38.5), 1)
                if rng.random() < 0.03
                else round(rng.uniform(36.1, 36.9), 1)
            )
        if symptoms is None:
            symptoms = (
                sorted(rng.sample(SYMPTOMS[1:], rng.randint(1, 2))) if rng.random() < 0.06 else []
            )
        return {
            "event_id": _uuid4(rng),
            "community_id": c.community_id,
            "resident_id": r.resident_id,
            "report_date": day,
            "temperature_c": temperature_c,
            "symptoms": symptoms,
            "event_time": at,
        }

    def _generate(
        self,
        rng: random.Random,
        end_ms: int,
        rate_per_s: float,
        silent_from: int | None,
        pending: list[tuple[int, int, str, Event]],
        face_quiet: tuple[str, int, int] | None = None,
    ) -> Iterator[tuple[str, Event]]:
        """The background traffic, merged with ``pending`` by event time.

        ``face_quiet`` (community, from, until): no face scans without consent there and then,
        so the engine's per-device alert suppression cannot swallow the scripted one."""
        # hot loop: locals only, one dict per event
        quiet_cid, quiet_from, quiet_until = face_quiet or ("", 0, 0)
        random_ = rng.random
        gauss = rng.gauss
        expovariate = rng.expovariate
        heappop, heappush = heapq.heappop, heapq.heappush
        token = self._pseudonymiser.token
        communities = self.communities
        n_communities = len(communities)
        scan_rate = rate_per_s / EVENTS_PER_SCAN
        rate_by_hour = [scan_rate * w for w in HOURLY_PROFILE]
        offset = self._offset_ms(self.start_ms)
        drifting, silent = self.drifting_device_id, self.silent_device_id
        silent_from_ms = end_ms if silent_from is None else silent_from
        entries_left = {p.pass_id: p.max_entries for c in communities for p in c.passes}
        last_out: dict[str, int] = {}
        # persons inside (community|subject): a person's passes alternate, the first one IN
        inside: set[str] = set()
        seq = len(pending)
        t = float(self.start_ms)
        while True:
            hour = int((t + offset) // _HOUR_MS) % 24
            t += expovariate(rate_by_hour[hour]) * 1000.0
            if t >= end_ms:
                break
            now = int(t)
            while pending and pending[0][0] <= now:
                item = heappop(pending)
                if item[2] == "GateScan":
                    _passed(inside, item[3])
                yield item[2], item[3]
            c = communities[int(random_() * n_communities)]
            gates = c.gates
            gate = gates[int(random_() * len(gates))]
            if gate.device_id == silent and now >= silent_from_ms:
                gate = gates[0]
            local_hour = (now + offset) // _HOUR_MS % 24
            out_share = 0.65 if 5 <= local_hour < 11 else 0.35 if 16 <= local_hour < 22 else 0.5
            direction = "OUT" if random_() < out_share else "IN"
            held = False  # a pass refused by the quota: the person stays inside
            stuck = False  # a restricted compound's residents all inside: a staff pass instead
            household_id: str | None = None
            consent = False
            code = "GREEN"
            kind = random_()
            if kind < 0.80:
                subject_type = "RESIDENT"
                if kind < 0.00005 and c.confined:  # breach: a confined resident walks out
                    r = c.confined[int(random_() * len(c.confined))]
                    direction = "OUT"
                else:
                    r = c.active[int(random_() * len(c.active))]
                    direction = "OUT" if c.community_id + "|" + r.resident_id in inside else "IN"
                    if c.restricted and direction == "OUT":
                        previous = last_out.get(r.household_id)
                        if previous is not None and now - previous < 172_800_000:
                            if random_() < 0.97:  # the household has used its quota: stays in
                                # (and someone outside comes home instead; nobody: a staff pass)
                                for _ in range(8):
                                    r = c.active[int(random_() * len(c.active))]
                                    if c.community_id + "|" + r.resident_id not in inside:
                                        direction = "IN"
                                        break
                                else:
                                    stuck = True
                            else:
                                held = True  # goes anyway: refused by the quota, still inside
                        else:
                            last_out[r.household_id] = now
                subject_id = r.resident_id
                household_id = r.household_id
                consent = r.face_consent
                code = r.health_code
                roll = random_()
                if roll < (0.05 if consent else 0.003):
                    method = "FACE"
                    if (
                        not consent
                        and c.community_id == quiet_cid
                        and quiet_from <= now <= quiet_until
                    ):
                        method = "QR"
                elif roll < 0.55:
                    method = "QR"
                elif roll < 0.96:
                    method = "HEALTH_CODE"
                else:
                    method, code = "CARD", "UNKNOWN"
            elif kind < 0.88:
                subject_type, method = "VISITOR", "QR"
                p = c.passes[int(random_() * len(c.passes))]
                direction = "OUT" if c.community_id + "|" + p.pass_id in inside else "IN"
                if direction == "IN":  # (a holder of a dead pass is refused: not inside)
                    if p.valid_at(now) and entries_left[p.pass_id] > 0:
                        entries_left[p.pass_id] -= 1
                    elif random_() < 0.9:  # most holders of a dead pass stay away
                        continue
                subject_id = p.pass_id
                code_roll = random_()
                code = "RED" if code_roll < 0.003 else "YELLOW" if code_roll < 0.02 else "GREEN"
            elif kind < 0.96:
                subject_type, method, code = "VEHICLE", "PLATE", "UNKNOWN"
                if random_() < 0.02:
                    subject_id = token("plate", f"{c.province}X{int(random_() * 1e5):05d}")
                else:
                    subject_id = c.vehicles[int(random_() * len(c.vehicles))].vehicle_id
            elif kind < 0.99:
                subject_type, method = "STAFF", "CARD"
                subject_id = c.staff_ids[int(random_() * len(c.staff_ids))]
                direction = "OUT" if c.community_id + "|" + subject_id in inside else "IN"
            else:
                subject_type, method = (
                    ("RESIDENT", "QR") if random_() < 0.5 else ("UNKNOWN", "MANUAL")
                )
                subject_id = token("outsider", f"{random_():.12f}")
                code = "UNKNOWN" if method == "MANUAL" else "GREEN"
                direction = "IN"  # someone not registered arriving (never counted inside)
            if stuck:
                subject_type, method, code, consent, household_id = (
                    "STAFF", "CARD", "GREEN", False, None,
                )  # fmt: skip
                subject_id = c.staff_ids[int(random_() * len(c.staff_ids))]
                direction = "OUT" if c.community_id + "|" + subject_id in inside else "IN"
            temperature: float | None = None
            if direction == "IN" and subject_type != "VEHICLE":
                roll = random_()
                if roll < 0.003:
                    temperature = 37.3 + random_() * 1.4
                elif roll < 0.005:
                    temperature = 33.0 + random_() * 0.9  # forehead cooled by the wind
                else:
                    temperature = gauss(36.3, 0.3)
                if gate.device_id == drifting:
                    temperature -= 1.5
                temperature = round(temperature, 1)
                if temperature >= 37.3 and random_() < 0.85:  # ~15 % never get rechecked
                    recheck_at = now + 60_000 + int(random_() * 120_000)
                    confirmed = random_() < 0.4
                    value = 37.3 + random_() * 1.2 if confirmed else 36.3 + random_() * 0.8
                    recheck = self._reading(
                        rng,
                        c,
                        gate,
                        recheck_at,
                        round(value, 1),
                        subject_id=subject_id,
                        handheld=True,
                    )
                    seq += 1
                    heappush(pending, (recheck_at, seq, "TemperatureReading", recheck))
                yield (
                    "TemperatureReading",
                    {
                        "event_id": _uuid4(rng),
                        "community_id": c.community_id,
                        "gate_id": gate.gate_id,
                        "device_id": gate.device_id,
                        "subject_id": subject_id,
                        "temperature_c": temperature,
                        "ambient_c": round(c.ambient_c + 4.0 * random_() - 2.0, 1),
                        "sensor": "INFRARED_GATE",
                        "event_time": now,
                    },
                )
            if subject_type in PERSONS and not held:
                key = c.community_id + "|" + subject_id
                if direction == "IN":
                    inside.add(key)
                else:
                    inside.discard(key)
            yield (
                "GateScan",
                {
                    "event_id": _uuid4(rng),
                    "community_id": c.community_id,
                    "gate_id": gate.gate_id,
                    "device_id": gate.device_id,
                    "direction": direction,
                    "subject_type": subject_type,
                    "subject_id": subject_id,
                    "household_id": household_id,
                    "method": method,
                    "health_code": code,
                    "face_consent": consent,
                    "temperature_c": temperature,
                    "event_time": now,
                },
            )
        while pending:
            item = heappop(pending)
            if item[0] < end_ms:
                yield item[2], item[3]

    def _reading(
        self,
        rng: random.Random,
        c: _Community,
        gate: _Gate,
        at: int,
        temperature_c: float,
        *,
        subject_id: str | None = None,
        handheld: bool = False,
    ) -> Event:
        """A reading by the gate's infrared device, or with ``handheld`` by its recheck gun."""
        return {
            "event_id": _uuid4(rng),
            "community_id": c.community_id,
            "gate_id": gate.gate_id,
            "device_id": gate.handheld_id if handheld else gate.device_id,
            "subject_id": subject_id,
            "temperature_c": temperature_c,
            "ambient_c": None if handheld else c.ambient_c,
            "sensor": "INFRARED_HANDHELD" if handheld else "INFRARED_GATE",
            "event_time": at,
        }

    def _scan(
        self,
        rng: random.Random,
        c: _Community,
        gate: _Gate,
        at: int,
        *,
        direction: str,
        subject_type: str,
        subject_id: str,
        household_id: str | None = None,
        method: str = "QR",
        health_code: str = "GREEN",
        face_consent: bool = False,
        temperature_c: float | None = None,
    ) -> Event:
        return {
            "event_id": _uuid4(rng),
            "community_id": c.community_id,
            "gate_id": gate.gate_id,
            "device_id": gate.device_id,
            "direction": direction,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "household_id": household_id,
            "method": method,
            "health_code": health_code,
            "face_consent": face_consent,
            "temperature_c": temperature_c,
            "event_time": at,
        }

    # --- malformed payloads ------------------------------------------------------------------

    def malformed(self, n: int) -> list[bytes]:
        """``n`` payloads a consumer must dead-letter, not crash on: garbage, a wrong marker, an
        unknown fingerprint, a body cut short, JSON instead of Avro, empty."""
        rng = random.Random(f"fangxian-simulator:{self.seed}:malformed")
        makers = (
            lambda: b"garbage",
            lambda: b"\xc3\x02" + rng.randbytes(8) + rng.randbytes(rng.randint(4, 40)),
            lambda: b"\xc3\x01" + rng.randbytes(8) + rng.randbytes(rng.randint(4, 40)),
            lambda: b"\xc3\x01" + rng.randbytes(rng.randint(0, 7)),
            lambda: b'{"event_id": "not-avro", "direction": "IN"}',
            lambda: b"",
            lambda: rng.randbytes(rng.randint(1, 64)),
        )
        return [makers[i % len(makers)]() for i in range(n)]


def scripted_day(
    community_count: int = 2,
    residents_per_community: int = 300,
    seed: int = 2020,
    *,
    rate_per_s: float = 1.0,
    day: dt.date = DEFAULT_DAY,
    pseudonymiser_key: bytes = b"fangxian-simulator-not-a-secret",
) -> ScriptedRun:
    """A run in which every AlertType except OTHER has a scripted cause.

    05:40 → 10:20 local on ``day``: the last 20 minutes of the 22:00–06:00 curfew, the morning
    peak and the 10:00 report deadline. At the default 1 event/s that is ~20k events.
    """
    start = dt.datetime.combine(day, SCRIPTED_START, tzinfo=ZoneInfo(TIMEZONE))
    sim = CommunitySimulator(
        community_count,
        residents_per_community,
        seed,
        pseudonymiser_key=pseudonymiser_key,
        start_ms=int(start.timestamp() * 1000),
    )
    events = sim.events(SCRIPTED_DURATION_S, rate_per_s, ensure_every_alert_type=True)
    end_ms = sim.start_ms + SCRIPTED_DURATION_S * 1000
    merged, crowd = script_capacity(sim, list(events), end_ms)
    sim.scenarios = sorted([*sim.scenarios, crowd], key=lambda s: (s.at_ms, s.alert_type))
    return ScriptedRun(sim, list(sim.scenarios), iter(merged))
