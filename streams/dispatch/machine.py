"""Routing, grouping, quiet hours, escalation and repeats as a fold over ``alert.actions``.

The dispatcher's whole state is what its own ``alert.actions`` records say: ``ROUTED`` (an
alert was taken on, with its group and when its first message is due), ``SENDING`` (a delivery
is about to be handed to a channel), ``NOTIFIED`` / ``DELIVERY_FAILED`` (its outcome),
``ESCALATED``, ``ACKNOWLEDGED``, ``RESOLVED``, ``SILENCED``. ``apply`` folds one record in and is
idempotent, so a restarted dispatcher replays its partitions of ``alert.actions`` and knows
every open alert, every timer and every delivery that was in flight. Nothing here reads a
clock: callers pass ``now_ms``.

The schedule of an open alert (a group leader) is a list of items: step *k* of the community's
escalation policy is due ``after_s`` after the alert was routed (step 0 at the end of the group
wait, at once for CRITICAL), then the last step's level again every ``repeat_interval_s``
(only the latest due repeat is sent after an outage). Quiet hours push an item's due time to
their end unless the severity bypasses them. Recipients are whoever is on duty at the alert's
event time plus the item's offset (``Roster.recipients``: the next level up when a level has
nobody). An acknowledgement or resolution of the leader closes the group.

Silences (``silences.SilenceBook``, from ``alert.silences``) and inhibition
(``inhibition.Inhibitor``, configured rules) mute an alert: when it is taken on, and again
whenever something of an open leader may be due (``mute_due``), so a silence created later or a
source that arrives within the group wait stops the messages still to go. A muted alert is
closed with a SILENCED record saying why (``muted_by`` silence or inhibition); it is never
paged and never dropped unseen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from streams.dispatch.closed import ClosedAlerts
from streams.dispatch.inhibition import Inhibitor
from streams.dispatch.roster import STREET_OFFICE_TYPES, Policy, Roster, Staff, Step
from streams.dispatch.silences import SilenceBook, mute_detail

NAMESPACE: Final = uuid.UUID("6c0c3d52-8f8e-5c1e-9b1f-2d1f0e5a7a11")
OPEN, ACKNOWLEDGED, RESOLVED, SILENCED = "OPEN", "ACKNOWLEDGED", "RESOLVED", "SILENCED"
SMS: Final = "sms"
UNROUTED: Final = "unrouted"
#: a delivery that failed for a passing reason is sent again, at most this many times in all
MAX_ATTEMPTS: Final = 5
REQUESTS: Final = {"ACK_REQUESTED": ACKNOWLEDGED, "RESOLVE_REQUESTED": RESOLVED}


def action_id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))


@dataclass
class AlertState:
    alert_id: str
    community_id: str
    alert_type: str
    severity: str
    gate_id: str | None
    event_time: int
    partition: int
    routed_at: int
    leader: str
    flush_at: int
    message_zh: str = ""
    message_en: str = ""
    status: str = OPEN
    closed_by: str = ""
    closed_at: int = 0
    members: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # delivery_id → NOTIFIED/FAILED
    attempts: dict[str, int] = field(default_factory=dict)  # delivery_id → last SENDING attempt
    inflight: set[str] = field(default_factory=set)
    retry_at: dict[str, int] = field(default_factory=dict)  # delivery_id → when to try again
    escalated_items: set[str] = field(default_factory=set)
    done_items: set[str] = field(default_factory=set)  # every delivery has an outcome
    wake_ms: int = 0  # nothing can be due before this (0: look at the next tick)
    level: int = 0
    created_at: int = 0  # the alert's own created_at (0: not recorded; use event_time)
    device_id: str | None = None  # for silences by device (ROUTED detail ``device_id``)
    subject_key: str = ""  # keyed digest of the subject, for inhibition by person

    @property
    def labels(self) -> dict[str, str]:
        """The values inhibition rules compare (``inhibition.LABELS``)."""
        return {
            "gate_id": self.gate_id or "",
            "device_id": self.device_id or "",
            "subject_id": self.subject_key,
        }

    @property
    def is_leader(self) -> bool:
        return self.leader == self.alert_id

    @property
    def group_count(self) -> int:
        return 1 + len(self.members)


@dataclass(frozen=True)
class Delivery:
    """One message to one channel target for one schedule item of a leader."""

    delivery_id: str
    alert_id: str
    item: str  # "s0", "s1", ... or "r3" (third repeat)
    level: int
    channel: str  # a configured target name, or "sms:<staff_id>"
    recipients: tuple[Staff, ...]
    group_count: int
    attempt: int  # the attempt this send will be (1 the first time)
    escalation: bool  # a step beyond the first, or a repeat
    due_ms: int


def _item_due(policy: Policy, state: AlertState, item: str) -> tuple[int, Step, int]:
    """(due ms, step, offset s from the event time for routing) of a schedule item."""
    steps = policy.steps
    if item.startswith("s"):
        k = int(item[1:])
        step = steps[k]
        due = max(state.flush_at, state.routed_at + step.after_s * 1000)
        return due, step, step.after_s
    r = int(item[1:])
    last = steps[-1]
    offset = last.after_s + r * policy.repeat_interval_s
    return max(state.flush_at, state.routed_at + offset * 1000), last, offset


class DispatchMachine:
    """State of the alerts of the assigned partitions; see the module docstring."""

    def __init__(
        self,
        roster: Roster,
        default_channels: Iterable[str] = (),
        *,
        silences: SilenceBook | None = None,
        inhibitor: Inhibitor | None = None,
    ) -> None:
        self.roster = roster
        self.default_channels = tuple(default_channels)
        self.silence_book = silences if silences is not None else SilenceBook()
        self.inhibitor = inhibitor if inhibitor is not None else Inhibitor(rules=())
        self.alerts: dict[str, AlertState] = {}
        self.silenced: set[str] = set()
        # closed alerts leave ``alerts`` (``prune``); their ids stay here for a while
        self.closed = ClosedAlerts()
        # (community, gate, type) → leader whose first message has not gone yet
        self._groups: dict[tuple[str, str, str], str] = {}
        self.in_doubt_resends = 0
        self._requests: list[Mapping[str, Any]] = []

    # -- records ------------------------------------------------------------------------------
    def _record(
        self,
        kind: str,
        state: AlertState,
        now_ms: int,
        *,
        id_parts: tuple[object, ...] = (),
        **fields: Any,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "action_id": action_id(state.alert_id, kind, *id_parts),
            "alert_id": state.alert_id,
            "community_id": state.community_id,
            "action": kind,
            "alert_type": state.alert_type,
            "severity": state.severity,
            "gate_id": state.gate_id,
            "level": 0,
            "staff_ids": [],
            "channel": None,
            "delivery_id": None,
            "attempt": 0,
            "group_count": 1,
            "detail": {"partition": str(state.partition)},
            "alert_event_time": state.event_time,
            "created_at": now_ms,
        }
        record.update(fields)
        record["detail"] = {"partition": str(state.partition), **fields.get("detail", {})}
        return record

    # -- alerts in -------------------------------------------------------------------------------
    def on_alert(
        self, alert: Mapping[str, Any], partition: int, now_ms: int
    ) -> list[dict[str, Any]]:
        """The records that take ``alert`` on (ROUTED, or SILENCED), already applied; none for
        an alert already known (a redelivery)."""
        alert_id = alert["alert_id"]
        if alert_id in self.alerts or alert_id in self.silenced or alert_id in self.closed:
            if alert.get("details", {}).get("status") == "CLEARED":
                # an early warning whose condition ended (issue 20): the same alert, cleared
                return self.close(RESOLVED, alert_id, "", now_ms, via="cleared")
            return []
        policy = self.roster.policy(alert["community_id"])
        state = AlertState(
            alert_id=alert_id,
            community_id=alert["community_id"],
            alert_type=alert["alert_type"],
            severity=alert["severity"],
            gate_id=alert.get("gate_id"),
            event_time=int(alert["event_time"]),
            partition=partition,
            routed_at=now_ms,
            leader=alert_id,
            flush_at=now_ms,
            message_zh=alert.get("message_zh", ""),
            message_en=alert.get("message_en", ""),
            created_at=int(alert.get("created_at") or alert["event_time"]),
            device_id=alert.get("device_id"),
            subject_key=self.inhibitor.subject_key(alert.get("subject_id")),
        )
        labels = _label_detail(state)
        silenced_by = ""
        if alert.get("details", {}).get("notify", "true") == "false":
            silenced_by = "record only (notify=false)"
        elif state.alert_type in policy.silenced_types:
            silenced_by = "policy silences this type"
        if silenced_by:
            record = self._record(
                SILENCED,
                state,
                now_ms,
                detail={"reason": silenced_by, "muted_by": "policy", **labels},
            )
            self.apply(record)
            return [record]
        muted = self._muting(state, now_ms)
        if muted is not None:
            why, staff = muted
            record = self._record(
                SILENCED, state, now_ms, staff_ids=staff, detail={**why, **labels}
            )
            self.apply(record)
            return [record]
        detail = {
            "message_zh": state.message_zh,
            "message_en": state.message_en,
            "alert_created_at": str(state.created_at),
            **labels,
        }
        if state.severity in policy.immediate_severities:
            detail["flush_at"] = str(now_ms)
        else:
            key = (state.community_id, state.gate_id or "", state.alert_type)
            leader = self.alerts.get(self._groups.get(key, ""))
            if leader is not None and leader.status == OPEN and leader.flush_at > now_ms:
                detail["leader"] = leader.alert_id
                detail["flush_at"] = str(leader.flush_at)
            else:
                detail["flush_at"] = str(now_ms + policy.group_wait_s * 1000)
        record = self._record("ROUTED", state, now_ms, detail=detail)
        self.apply(record)
        return [record]

    # -- the fold --------------------------------------------------------------------------------
    def apply(self, record: Mapping[str, Any], live: bool = True) -> list[dict[str, Any]]:
        """Fold one ``alert.actions`` record in (idempotent). Returns derived records to
        produce (already applied): the ACKNOWLEDGED / RESOLVED of a request from the endpoint,
        and those of a group leader's members. While restoring (``live=False``) nothing is
        derived; ``settle`` derives what is still missing once the log has been read."""
        kind = record["action"]
        alert_id = record["alert_id"]
        detail = record.get("detail", {})
        if kind in (RESOLVED, "RESOLVE_REQUESTED"):
            # a resolved source holds nothing back any more (an acknowledged one is closed
            # before a person resolves it: the request is what says so)
            self.inhibitor.end(alert_id)
        if kind in REQUESTS:
            if not live:
                self._requests.append(record)
                return []
            staff = (record.get("staff_ids") or [""])[0]
            via = detail.get("via", "link")
            return self.close(REQUESTS[kind], alert_id, staff, int(record["created_at"]), via)
        if kind == SILENCED and alert_id not in self.alerts:
            if alert_id not in self.silenced and alert_id not in self.closed:
                self.silenced.add(alert_id)
                self._observe(record)  # a muted alert still holds others back
            return []
        if kind == "ROUTED":
            self._apply_routed(record, detail)
            return []
        state = self.alerts.get(alert_id)
        if state is None:
            return []  # an action on an alert this instance does not hold (another partition)
        delivery = record.get("delivery_id")
        state.wake_ms = 0
        if kind == "SENDING" and delivery:
            if delivery not in state.outcomes:
                state.inflight.add(delivery)
            state.attempts[delivery] = max(state.attempts.get(delivery, 0), record["attempt"])
        elif kind == "DELIVERY_FAILED" and delivery and "retry_at" in detail:
            state.inflight.discard(delivery)
            if delivery not in state.outcomes:
                state.retry_at[delivery] = int(detail["retry_at"])
        elif kind in ("NOTIFIED", "DELIVERY_FAILED") and delivery:
            state.inflight.discard(delivery)
            state.retry_at.pop(delivery, None)
            state.outcomes[delivery] = "NOTIFIED" if kind == "NOTIFIED" else "FAILED"
            if kind == "NOTIFIED":
                state.level = max(state.level, int(record.get("level", 0)))
        elif kind == "ESCALATED":
            state.escalated_items.add(detail.get("item", ""))
        elif kind in (ACKNOWLEDGED, RESOLVED, SILENCED) and state.status == OPEN:
            state.status = kind
            state.closed_by = ",".join(record.get("staff_ids", []))
            state.closed_at = int(record["created_at"])
            if state.is_leader and live:
                return [
                    self._record(
                        kind,
                        self.alerts[member],
                        int(record["created_at"]),
                        staff_ids=list(record.get("staff_ids", [])),
                        channel=record.get("channel"),
                        detail={"via_leader": alert_id},
                    )
                    for member in state.members
                    if member in self.alerts and self.alerts[member].status == OPEN
                ]
        return []

    def _apply_routed(self, record: Mapping[str, Any], detail: Mapping[str, str]) -> None:
        alert_id = record["alert_id"]
        if alert_id in self.alerts or alert_id in self.closed:
            return  # known, or closed and pruned (a late re-read must not reopen it)
        leader_id = detail.get("leader", alert_id)
        state = AlertState(
            alert_id=alert_id,
            community_id=record["community_id"],
            alert_type=record["alert_type"],
            severity=record["severity"],
            gate_id=record.get("gate_id"),
            event_time=int(record["alert_event_time"]),
            partition=int(detail.get("partition", 0)),
            routed_at=int(record["created_at"]),
            leader=leader_id,
            flush_at=int(detail.get("flush_at", record["created_at"])),
            message_zh=detail.get("message_zh", ""),
            message_en=detail.get("message_en", ""),
            created_at=int(detail.get("alert_created_at") or record["alert_event_time"]),
            device_id=detail.get("device_id") or None,
            subject_key=detail.get("subject_key", ""),
        )
        self.alerts[alert_id] = state
        self._observe(record)
        leader = self.alerts.get(leader_id)
        if leader_id != alert_id and leader is not None:
            leader.members.append(alert_id)
        elif (
            leader_id == alert_id
            and state.severity not in self.roster.policy(state.community_id).immediate_severities
        ):
            self._groups[(state.community_id, state.gate_id or "", state.alert_type)] = alert_id

    def _observe(self, record: Mapping[str, Any]) -> None:
        """An alert taken on (ROUTED or SILENCED): an inhibition source from its record's time."""
        detail = record.get("detail") or {}
        self.inhibitor.observe(
            record["alert_id"],
            record["community_id"],
            record["alert_type"],
            record["severity"],
            {
                "gate_id": record.get("gate_id") or "",
                "device_id": detail.get("device_id", ""),
                "subject_id": detail.get("subject_key", ""),
            },
            int(record["created_at"]),
        )

    # -- silences and inhibition ---------------------------------------------------------------
    def _muting(self, state: AlertState, now_ms: int) -> tuple[dict[str, str], list[str]] | None:
        """Why ``state`` is muted at ``now_ms`` (the SILENCED detail, and who: the silence's
        author), or None: a silence first, then an inhibition."""
        silence = self.silence_book.matching(
            state.community_id, state.gate_id, state.device_id, state.alert_type, now_ms
        )
        if silence is not None:
            return mute_detail(silence), [silence.created_by]
        held = self.inhibitor.holding(
            state.alert_id,
            state.community_id,
            state.alert_type,
            state.severity,
            state.labels,
            now_ms,
        )
        if held is not None:
            return held.detail(), []
        return None

    def mute_due(self, now_ms: int) -> list[dict[str, Any]]:
        """Open group leaders a silence or an inhibition covers at ``now_ms``, closed SILENCED
        (their open members with them), applied: checked whenever something of theirs may be
        due, so a silence created after the alert, or a source that arrives within the group
        wait, stops the messages still to go (the alert stays closed when the silence ends)."""
        if not self.silence_book.silences and not len(self.inhibitor):
            return []
        out: list[dict[str, Any]] = []
        for state in list(self.alerts.values()):
            if state.status != OPEN or not state.is_leader or state.wake_ms > now_ms:
                continue
            muted = self._muting(state, now_ms)
            if muted is None:
                continue
            why, staff = muted
            record = self._record(
                SILENCED, state, now_ms, staff_ids=staff, detail={**why, "while_open": "true"}
            )
            out.append(record)
            out.extend(self.apply(record))
        return out

    def prune_muting(self, now_ms: int) -> None:
        """Forget silences over for a day and inhibition sources whose time is over."""
        self.silence_book.prune(now_ms)
        self.inhibitor.prune(now_ms)

    def settle(self) -> list[dict[str, Any]]:
        """After a restore: requests not yet turned into ACKNOWLEDGED / RESOLVED, and members
        of closed leaders still open (the process died between those writes), applied."""
        out: list[dict[str, Any]] = []
        for request in self._requests:
            out.extend(self.apply(request))
        self._requests.clear()
        for state in list(self.alerts.values()):
            leader = self.alerts.get(state.leader)
            if state.status == OPEN and leader is not None and leader.status != OPEN:
                record = self._record(
                    leader.status,
                    state,
                    leader.closed_at,
                    staff_ids=[s for s in leader.closed_by.split(",") if s],
                    detail={"via_leader": leader.alert_id},
                )
                self.apply(record)
                out.append(record)
        return out

    def wake_all(self) -> None:
        """The roster or a policy changed: due times must be computed again."""
        for state in self.alerts.values():
            state.wake_ms = 0

    def release_in_doubt(self) -> int:
        """After a restore: deliveries with SENDING but no outcome may or may not have reached
        the channel (the process died in between). They are sent again (an alert is never
        lost); this is the one window in which a person can get a message twice."""
        count = 0
        for state in self.alerts.values():
            count += len(state.inflight)
            state.inflight.clear()
            state.wake_ms = 0
        self.in_doubt_resends += count
        return count

    def prune(self, now_ms: int) -> int:
        """Closed alerts leave memory: an acknowledged, resolved or silenced alert with no
        delivery in flight (its outcome is still to be recorded), and — for a group leader —
        no member still open (its closing record is still to come back, or to be settled after
        a restart), is dropped; its id stays in ``closed`` (bounded, time-limited) so a late
        duplicate is still skipped. Returns how many alerts left. Called by the stage once a
        second and after a restore (never while restoring: ``settle`` needs the leaders)."""
        gone = 0
        for alert_id, state in list(self.alerts.items()):
            if state.status == OPEN or state.inflight:
                continue
            if state.is_leader and any(
                self.alerts[m].status == OPEN for m in state.members if m in self.alerts
            ):
                continue
            self.closed.add(alert_id, state.status, state.closed_by, state.closed_at)
            del self.alerts[alert_id]
            gone += 1
        for alert_id in self.silenced:  # silenced when taken on: never held as state
            self.closed.add(alert_id, SILENCED, "", now_ms)
        self.silenced.clear()
        if gone:
            self._groups = {k: v for k, v in self._groups.items() if v in self.alerts}
        self.closed.expire(now_ms)
        return gone

    def forget_partitions(self, keep: Callable[[int], bool]) -> None:
        """Drop the state of partitions this instance no longer owns."""
        for alert_id in [a for a, s in self.alerts.items() if not keep(s.partition)]:
            del self.alerts[alert_id]
        self._groups = {k: v for k, v in self._groups.items() if v in self.alerts}

    # -- timers ----------------------------------------------------------------------------------
    def _channels(self, step: Step) -> tuple[str, ...]:
        return step.channels or self.default_channels

    def _items(self, policy: Policy) -> list[str]:
        return [f"s{k}" for k in range(len(policy.steps))]

    def due(self, now_ms: int) -> list[Delivery]:
        """Every delivery that should be handed to a channel now (none that is in flight)."""
        out: list[Delivery] = []
        for state in self.alerts.values():
            if state.status != OPEN or not state.is_leader or state.wake_ms > now_ms:
                continue
            out.extend(self._due_of(state, now_ms))
        return out

    def _due_of(self, state: AlertState, now_ms: int) -> list[Delivery]:
        policy = self.roster.policy(state.community_id)
        items = self._items(policy)
        last_offset = policy.steps[-1].after_s
        next_repeat = -1
        if policy.repeat_interval_s > 0:
            elapsed_s = (now_ms - state.routed_at) // 1000 - last_offset
            latest = min(policy.max_repeats, max(0, elapsed_s // policy.repeat_interval_s))
            if latest >= 1:
                items.append(f"r{latest}")
            if latest < policy.max_repeats:
                next_repeat = latest + 1
        for item in items:
            if item in state.done_items:
                continue  # the roster is not asked again for an item that is over
            due, step, offset_s = _item_due(policy, state, item)
            due = policy.quiet_release_ms(due, state.severity)
            if due > now_ms:
                state.wake_ms = due
                return []
            pending = [
                d
                for d in self._deliveries(state, policy, item, step, offset_s, due)
                if d.delivery_id not in state.outcomes
            ]
            if pending:
                ready = [
                    d
                    for d in pending
                    if d.delivery_id not in state.inflight
                    and state.retry_at.get(d.delivery_id, 0) <= now_ms
                ]
                later = [
                    state.retry_at[d.delivery_id]
                    for d in pending
                    if state.retry_at.get(d.delivery_id, 0) > now_ms
                ]
                if not ready:
                    # every delivery is in flight (its outcome record wakes the alert) or
                    # waits for its retry
                    state.wake_ms = min(later) if later else 2**62
                return ready
            state.done_items.add(item)
        if next_repeat > 0:
            due, _, _ = _item_due(policy, state, f"r{next_repeat}")
            state.wake_ms = policy.quiet_release_ms(due, state.severity)
        else:
            state.wake_ms = 2**62  # the chain is over: only a record can change that
        return []

    def _deliveries(
        self, state: AlertState, policy: Policy, item: str, step: Step, offset_s: int, due: int
    ) -> list[Delivery]:
        level, people = self.roster.recipients(
            state.community_id,
            state.gate_id,
            state.alert_type,
            state.severity,
            step.level,
            state.event_time + offset_s * 1000,
        )
        if state.alert_type in STREET_OFFICE_TYPES:  # the community and the street office
            known = {p.staff_id for p in people}
            people = people + [
                p for p in self.roster.street_office(state.community_id) if p.staff_id not in known
            ]
        escalation = item != "s0"
        out = []
        for channel in self._channels(step):
            targets = (
                [(f"{SMS}:{p.staff_id}", (p,)) for p in people if p.contacts.phone]
                if channel == SMS
                else [(channel, tuple(people))]
            )
            for name, recipients in targets:
                delivery_id = action_id(state.alert_id, item, name)
                out.append(
                    Delivery(
                        delivery_id=delivery_id,
                        alert_id=state.alert_id,
                        item=item,
                        level=level,
                        channel=name,
                        recipients=recipients,
                        group_count=state.group_count,
                        attempt=state.attempts.get(delivery_id, 0) + 1,
                        escalation=escalation,
                        due_ms=due,
                    )
                )
        if not out:
            # no channel for this step (none configured, or SMS and nobody has a phone): a
            # delivery to UNROUTED fails visibly (DELIVERY_FAILED) instead of nothing happening
            delivery_id = action_id(state.alert_id, item, UNROUTED)
            out.append(
                Delivery(
                    delivery_id,
                    state.alert_id,
                    item,
                    level,
                    UNROUTED,
                    tuple(people),
                    state.group_count,
                    state.attempts.get(delivery_id, 0) + 1,
                    escalation,
                    due,
                )
            )
        return out

    # -- a delivery's records ------------------------------------------------------------------
    def begin(self, delivery: Delivery, now_ms: int) -> list[dict[str, Any]]:
        """ESCALATED (first delivery of a later item) and SENDING, applied; produce them and
        wait for the broker before handing the message to the channel."""
        state = self.alerts[delivery.alert_id]
        records = []
        if delivery.escalation and delivery.item not in state.escalated_items:
            records.append(
                self._record(
                    "ESCALATED",
                    state,
                    now_ms,
                    id_parts=(delivery.item,),
                    level=delivery.level,
                    staff_ids=[p.staff_id for p in delivery.recipients],
                    detail={"item": delivery.item, "from_level": str(state.level)},
                )
            )
        records.append(self._delivery_record("SENDING", delivery, now_ms, {}))
        for record in records:
            self.apply(record)
        return records

    def finish(
        self,
        delivery: Delivery,
        ok: bool,
        now_ms: int,
        detail: Mapping[str, str],
        *,
        retry_after_ms: int | None = None,
    ) -> dict[str, Any]:
        """NOTIFIED or DELIVERY_FAILED, applied. A failure with ``retry_after_ms`` (a passing
        reason) is sent again then, up to ``MAX_ATTEMPTS``; the last failure is final and the
        chain goes on (the next step, or the repeat, pages again)."""
        kind = "NOTIFIED" if ok else "DELIVERY_FAILED"
        extra = dict(detail)
        if not ok and retry_after_ms is not None and delivery.attempt < MAX_ATTEMPTS:
            extra["retry_at"] = str(now_ms + retry_after_ms)
        record = self._delivery_record(kind, delivery, now_ms, extra)
        self.apply(record)
        return record

    def _delivery_record(
        self, kind: str, delivery: Delivery, now_ms: int, detail: dict[str, str]
    ) -> dict[str, Any]:
        state = self.alerts[delivery.alert_id]
        return self._record(
            kind,
            state,
            now_ms,
            id_parts=(delivery.delivery_id, delivery.attempt),
            level=delivery.level,
            staff_ids=[p.staff_id for p in delivery.recipients],
            channel=delivery.channel,
            delivery_id=delivery.delivery_id,
            attempt=delivery.attempt,
            group_count=delivery.group_count,
            detail={"item": delivery.item, **detail},
        )

    def close(
        self, kind: str, alert_id: str, staff_id: str, now_ms: int, via: str = "link"
    ) -> list[dict[str, Any]]:
        """ACKNOWLEDGED / RESOLVED of an alert this instance holds, applied, with its members."""
        state = self.alerts.get(alert_id)
        if state is None or state.status != OPEN:
            return []
        record = self._record(kind, state, now_ms, staff_ids=[staff_id], detail={"via": via})
        return [record, *self.apply(record)]


def _label_detail(state: AlertState) -> dict[str, str]:
    """What a take-on record keeps of the alert for silences and inhibition after a restart:
    the device, and the keyed digest of the subject (never the subject itself)."""
    out = {}
    if state.device_id:
        out["device_id"] = state.device_id
    if state.subject_key:
        out["subject_key"] = state.subject_key
    return out


def request_record(
    kind: str, alert_id: str, staff_id: str, partition: int, now_ms: int
) -> dict[str, Any]:
    """What the acknowledge endpoint writes (``ACK_REQUESTED`` / ``RESOLVE_REQUESTED``): it
    does not hold the alert, so the alert's own fields are left blank; the dispatcher that
    holds it answers with the complete ACKNOWLEDGED / RESOLVED."""
    if kind not in REQUESTS:
        raise ValueError(f"not a request kind: {kind}")
    return {
        "action_id": action_id(alert_id, kind, staff_id, now_ms),
        "alert_id": alert_id,
        "community_id": "",
        "action": kind,
        "alert_type": "",
        "severity": "INFO",
        "gate_id": None,
        "level": 0,
        "staff_ids": [staff_id],
        "channel": None,
        "delivery_id": None,
        "attempt": 0,
        "group_count": 1,
        "detail": {"partition": str(partition), "via": "link"},
        "alert_event_time": 0,
        "created_at": now_ms,
    }
