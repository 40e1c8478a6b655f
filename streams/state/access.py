"""Gate access and quotas: the state behind a scan's decision.

* ``ReplayMemory`` (store ``replay``, key a chunk number: the events one batch remembered, in one
  record): every event seen recently, with the decision a scan got — a redelivered scan gets
  the same decision again and changes nothing, a replayed reading or report produces nothing.
  Bounded by ``capacity`` (oldest first) and by event time.
* ``ExitQuota`` (store ``quota``, key ``community|scope|id``): pass times for entry limits
  (``streams.rules.entry_limit``), counted both ways in event time.
* ``PassDeduper`` (store ``dedupe``, key ``community|subject|gate|direction``): a repeat scan of
  one pass is counted once.
* visitor-pass entries (store ``pass_entries``, key ``community|pass``): IN passes made on a pass.

Every pass that was let through counts, however late it arrives: the quota is a count of real
passes, so a backlog, a restart's rebuild in mixed chunks or a gate uploading its buffer cannot
make an exit disappear (issue 9, defect 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.rules.config import CommunityRules
from streams.rules.entry_limit import (
    ExitQuota,
    PassDeduper,
    check_entry_limit,
    check_household,
    direction_limited,
    limit_key,
)
from streams.rules.gate_access import (
    Finding,
    check_curfew,
    check_health_code,
    check_quarantine,
    check_resident,
    check_staff,
    check_unknown_type,
    check_vehicle,
    check_visitor_pass,
    let_out,
)
from streams.rules.timeutil import MS_PER_SECOND, clock_for
from streams.state.store import KeyedStore

Record = Mapping[str, Any]
_SEP = "\x1e"
_ENTRY_SEP = "\x1d"
_CHUNK_TAG = "c"
_SEQ_TAG = "n"
#: store key of the next chunk number (sorts after every chunk key)
SEQ_KEY = "~seq"
#: events per changelog record of the replay memory (a record stays far below Kafka's 1 MB)
CHUNK_EVENTS = 500


class Replayed:
    """A remembered event: its community, event time and (scans) the decision it got."""

    __slots__ = ("chunk", "community_id", "decision", "event_time", "raw")

    def __init__(
        self,
        community_id: str,
        event_time: int,
        decision: dict[str, Any] | None,
        chunk: ReplayChunk | None = None,
        raw: str | None = None,
    ):
        self.community_id = community_id
        self.event_time = event_time
        self.decision = decision
        self.chunk = chunk
        self.raw = raw  # its part of the chunk's record, once encoded


class ReplayChunk:
    """The events one batch remembered (at most ``CHUNK_EVENTS``): one changelog record."""

    __slots__ = ("entries", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.entries: dict[str, Replayed] = {}


def chunk_key(seq: int) -> str:
    return f"{seq:012d}"


def _encode_entry(event_id: str, v: Replayed) -> str:
    d = v.decision
    if d is None:
        return f"{event_id}{_SEP}{v.community_id}{_SEP}{v.event_time}"
    return _SEP.join(
        (
            event_id,
            v.community_id,
            str(v.event_time),
            d["gate_id"],
            d["subject_id"],
            d["decision"],
            ",".join(d["reasons"]),
            str(d["decided_at"]),
        )
    )


def _encode_chunk(value: ReplayChunk | int) -> bytes:
    if isinstance(value, int):
        return f"{_SEQ_TAG}{value}".encode()
    parts = [_CHUNK_TAG]
    append = parts.append
    for event_id, v in value.entries.items():
        raw = v.raw
        if raw is None:
            raw = v.raw = _encode_entry(event_id, v)
        append(raw)
    return _ENTRY_SEP.join(parts).encode()


def _decode_chunk(raw: bytes) -> ReplayChunk | int:
    text = raw.decode()
    if text.startswith(_SEQ_TAG):
        return int(text[1:])
    entries = text.split(_ENTRY_SEP)
    if entries[0] != _CHUNK_TAG:
        raise ValueError(f"not a replay chunk: {raw[:40]!r}")
    chunk = ReplayChunk(-1)  # numbered from its key by ReplayMemory.restored
    for entry in entries[1:]:
        parts = entry.split(_SEP)
        if len(parts) == 3:
            v = Replayed(parts[1], int(parts[2]), None, chunk, entry)
        else:
            _, cid, t, gate, subject, action, reasons, decided_at = parts
            v = Replayed(
                cid,
                int(t),
                {
                    "event_id": "",  # filled in by ReplayMemory.decision
                    "community_id": cid,
                    "gate_id": gate,
                    "subject_id": subject,
                    "decision": action,
                    "reasons": reasons.split(",") if reasons else [],
                    "decided_at": int(decided_at),
                },
                chunk,
                entry,
            )
        chunk.entries[parts[0]] = v
    return chunk


class ReplayMemory:
    """Recently seen event ids (and scans' decisions), bounded by count and by event time.

    The events a batch remembers are one record (``ReplayChunk``, key its number; at most
    ``CHUNK_EVENTS`` events, then the next number), not one record per event: the changelog
    carries a few records per batch. The lookup by event id is an index derived from the
    chunks (rebuilt after a restore). Eviction beyond ``capacity`` takes the oldest event, as
    one key per event did, and rewrites its chunk.
    """

    __slots__ = ("_chunks", "_index", "_next", "_open", "_stale", "capacity", "store")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.store: KeyedStore[Any] = KeyedStore(
            "replay", encode=_encode_chunk, decode=_decode_chunk
        )
        self._index: dict[str, Replayed] = {}  # event id -> entry, oldest first
        self._chunks: dict[int, ReplayChunk] = {}  # live chunks, oldest first
        self._open: ReplayChunk | None = None  # the chunk this batch fills
        self._next = 0  # number of the next chunk
        self._stale = False  # restored: the index is rebuilt before the next use

    # -- restore
    def restored(self, key: str) -> None:
        self._stale = True

    def _rebuild(self) -> None:
        self._stale = False
        self._open = None
        self._index.clear()
        self._chunks.clear()
        chunks: list[ReplayChunk] = []
        for key, value in self.store.items():
            if key == SEQ_KEY:
                self._next = value
            else:
                value.seq = int(key)
                chunks.append(value)
        chunks.sort(key=lambda c: c.seq)
        index = self._index
        for chunk in chunks:
            self._chunks[chunk.seq] = chunk
            index.update(chunk.entries)

    # -- lookups
    def __contains__(self, event_id: str) -> bool:
        if self._stale:
            self._rebuild()
        return event_id in self._index

    def decision(self, event_id: str) -> dict[str, Any] | None:
        """A copy of the decision a scan got, or None (not seen, or not a scan)."""
        if self._stale:
            self._rebuild()
        seen = self._index.get(event_id)
        if seen is None or seen.decision is None:
            return None
        replay = dict(seen.decision)
        replay["event_id"] = event_id
        replay["reasons"] = list(seen.decision["reasons"])
        return replay

    # -- changes
    def remember(
        self, event_id: str, community_id: str, t: int, decision: dict[str, Any] | None
    ) -> None:
        if self._stale:
            self._rebuild()
        chunk = self._open
        store = self.store
        if chunk is None or len(chunk.entries) >= CHUNK_EVENTS:
            seq = self._next
            self._next = seq + 1
            store[SEQ_KEY] = self._next
            chunk = self._open = self._chunks[seq] = ReplayChunk(seq)
            store[chunk_key(seq)] = chunk
        else:
            store.touch(chunk_key(chunk.seq))
        v = Replayed(community_id, t, decision, chunk)
        chunk.entries[event_id] = v
        index = self._index
        index[event_id] = v
        if len(index) > self.capacity:
            oldest = next(iter(index))
            self._drop(oldest, index.pop(oldest))

    def seal(self) -> None:
        """The batch is over: the next event remembered starts a new chunk."""
        self._open = None

    def _drop(self, event_id: str, v: Replayed) -> None:
        chunk = v.chunk
        assert chunk is not None
        del chunk.entries[event_id]
        key = chunk_key(chunk.seq)
        if chunk.entries:
            self.store.touch(key)
        else:
            del self.store[key]
            del self._chunks[chunk.seq]
            if chunk is self._open:
                self._open = None

    def expire(self, horizon_ms: Mapping[str, int]) -> int:
        if self._stale:
            self._rebuild()
        index = self._index
        stale = [k for k, v in index.items() if v.event_time < horizon_ms.get(v.community_id, 0)]
        for k in stale:
            self._drop(k, index.pop(k))
        return len(stale)

    def __len__(self) -> int:
        if self._stale:
            self._rebuild()
        return len(self._index)


class PendingPass:
    """What a scan's access checks found, and what to record once its action is known."""

    __slots__ = ("dedupe_key", "findings", "limit", "repeat", "visitor_entry")

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.limit: tuple[str, str, str] | None = None
        self.dedupe_key: tuple[str, str, str, str] | None = None
        self.repeat = False
        self.visitor_entry: str | None = None


class GateAccess:
    """Entry quotas, dedupe and visitor-pass counts of every community of a task."""

    __slots__ = ("dedupe", "pass_entries", "quota")

    def __init__(self) -> None:
        self.quota = ExitQuota()
        self.dedupe = PassDeduper()
        self.pass_entries: KeyedStore[int] = KeyedStore("pass_entries")

    def stores(self) -> list[KeyedStore[Any]]:
        return [self.quota.store, self.dedupe.store, self.pass_entries]

    def observe(
        self,
        ev: Mapping[str, Any],
        cid: str,
        t: int,
        rules: CommunityRules,
        resident: Record | None,
        visitor_pass: Record | None,
        vehicle: Record | None,
        observation_over: bool,
    ) -> PendingPass:
        """The access findings of one scan (health code, subject, quota, curfew)."""
        pending = PendingPass()
        findings = pending.findings
        subject_type = ev["subject_type"]
        subject_id = ev["subject_id"]
        direction = ev["direction"]
        gate_id = ev["gate_id"]
        health_code = ev.get("health_code")
        if health_code == "RED" or health_code == "YELLOW":
            found = check_health_code(health_code, rules)
            if found is not None:
                findings.append(found)
        if subject_type == "RESIDENT":
            found = check_resident(cid, resident)
            if found is None:
                found = check_quarantine(direction, resident, observation_over)
                # the register's household is counted; a scan that names another says so
                household = resident.get("household_id") if resident is not None else None
                mismatch = check_household(ev.get("household_id"), household, rules)
                if mismatch is not None:
                    findings.append(mismatch)
            else:
                household = None
                # unknown here but under observation elsewhere: the breach still stops the
                # exit that the unknown subject alone would let through
                breach = check_quarantine(direction, resident, False)
                if breach is not None and direction == "OUT":
                    findings.append(breach)
                found = let_out(found, direction)
            if found is not None:
                findings.append(found)
            if rules.entry_limit_scope != "NONE" and direction_limited(
                direction, rules.entry_limit_direction
            ):
                scope_id = limit_key(rules, subject_id, household)
                if scope_id is not None:
                    pending.limit = (cid, scope_id[0], scope_id[1])
                    pending.dedupe_key = (cid, subject_id, gate_id, direction)
        elif subject_type == "VISITOR":
            key = cid + "|" + subject_id
            used = self.pass_entries.get(key, 0) or 0
            if direction == "IN":
                pending.dedupe_key = (cid, subject_id, gate_id, direction)
                pending.visitor_entry = key
                if used and self.dedupe.is_repeat(
                    pending.dedupe_key, t, rules.dedupe_window_s * MS_PER_SECOND
                ):
                    pending.repeat = True
            found = check_visitor_pass(
                cid, direction, t, visitor_pass, used - 1 if pending.repeat else used
            )
            if found is not None:
                findings.append(let_out(found, direction))
        elif subject_type == "VEHICLE":
            found = check_vehicle(cid, direction, t, vehicle)
            if found is not None:
                findings.append(let_out(found, direction))
        elif subject_type == "STAFF":
            found = check_staff(resident)
            if found is None:
                found = check_quarantine(direction, resident, observation_over)
            else:
                found = let_out(found, direction)
            if found is not None:
                findings.append(found)
        else:
            findings.append(let_out(check_unknown_type(), direction))

        if rules.curfew_enabled:
            found = check_curfew(clock_for(rules.timezone).minute_of_day(t), rules)
            if found is not None:
                findings.append(found)

        limit = pending.limit
        if limit is not None:
            assert pending.dedupe_key is not None
            pending.repeat = self.dedupe.is_repeat(
                pending.dedupe_key, t, rules.dedupe_window_s * MS_PER_SECOND
            )
            if not pending.repeat:
                window_ms = rules.entry_limit_window_s * MS_PER_SECOND
                found = check_entry_limit(
                    self.quota.count(limit, t, window_ms), rules, limit[1], direction
                )
                if found is not None:
                    findings.append(found)
        return pending

    def record(self, pending: PendingPass, t: int) -> None:
        """A pass was let through: it uses the quota (a denied one does not). A re-scan of a
        counted pass uses nothing, and extends the pass: the next re-scan within the dedupe
        window of this one is the same pass too."""
        if pending.repeat:
            assert pending.dedupe_key is not None
            self.dedupe.record(pending.dedupe_key, t)
            return
        if pending.limit is not None:
            self.quota.record(pending.limit, t)
        elif pending.visitor_entry is not None:
            key = pending.visitor_entry
            self.pass_entries[key] = (self.pass_entries.get(key, 0) or 0) + 1
        else:
            return
        assert pending.dedupe_key is not None
        self.dedupe.record(pending.dedupe_key, t)

    def expire(
        self,
        dedupe_horizon: Mapping[str, int],
        quota_horizon: Mapping[str, int],
        quota_keep: Mapping[str, int],
        passes: Mapping[str, Record],
        pass_horizon: Mapping[str, int],
    ) -> int:
        dropped = self.dedupe.expire(dedupe_horizon)
        dropped += self.quota.expire(quota_horizon, quota_keep)
        for key in list(self.pass_entries):
            cid, _, pass_id = key.partition("|")
            record = passes.get(pass_id)
            until = record.get("valid_until") if record is not None else None
            if record is None or (until is not None and until < pass_horizon.get(cid, 0)):
                del self.pass_entries[key]
                dropped += 1
        return dropped
