"""The live side of the console: one aiokafka consumer (no group: every console instance sees
everything) on ``gate.decisions``, ``alerts`` and ``alert.actions``, folded into the state the
pages show and fanned out to the browsers' event streams (Server-Sent Events).

``alerts`` and ``alert.actions`` start ``console_lookback_s`` back (by timestamp), so an alert
that is in Kafka but not yet in ClickHouse is still on the page after a restart; decisions
start at the end (their history is in ClickHouse). Every event carries its community, and a
subscriber only gets the events of communities its viewer may see (``Viewer.can_see``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.privacy import mask_token
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from schemas.labels import ALERT_TYPE_ZH, DECISION_ZH, SEVERITY_ZH

log = logging.getLogger(__name__)

MAX_ALERTS = 20_000
RECENT_DECISIONS = 200
QUEUE_SIZE = 2_000

STATUS_ZH = {
    "OPEN": "待处理",
    "ACK_REQUESTED": "确认中",
    "ACKNOWLEDGED": "已确认",
    "RESOLVE_REQUESTED": "处置中",
    "RESOLVED": "已处置",
    "SILENCED": "仅记录",
}
# A request from the console or a link moves the status only forwards.
_STATUS_RANK = {
    "OPEN": 0,
    "ACK_REQUESTED": 1,
    "ACKNOWLEDGED": 2,
    "RESOLVE_REQUESTED": 3,
    "RESOLVED": 4,
    "SILENCED": 4,
}


# records only the dispatcher that holds an alert writes
_DISPATCHER_KINDS = frozenset(
    {
        "ROUTED",
        "SENDING",
        "NOTIFIED",
        "DELIVERY_FAILED",
        "ESCALATED",
        "ACKNOWLEDGED",
        "RESOLVED",
        "SILENCED",
    }
)


@dataclass
class AlertView:
    """An alert as the console shows it, with what ``alert.actions`` says about it."""

    alert_id: str
    community_id: str
    alert_type: str
    severity: str
    gate_id: str | None
    device_id: str | None
    subject: str  # masked token
    message_zh: str
    message_en: str
    event_time: int
    created_at: int
    partition: int | None = None
    status: str = "OPEN"
    level: int = 0
    escalations: int = 0
    notified: int = 0
    failed: int = 0
    by: str = ""
    note: str = ""
    seen_ms: int = 0  # when this console first saw it (wall clock)
    routed: bool = False  # the dispatcher has taken it on (its requests are answered)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "community_id": self.community_id,
            "alert_type": self.alert_type,
            "type_zh": ALERT_TYPE_ZH.get(self.alert_type, self.alert_type),
            "severity": self.severity,
            "severity_zh": SEVERITY_ZH.get(self.severity, self.severity),
            "gate_id": self.gate_id or "",
            "device_id": self.device_id or "",
            "subject": self.subject,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "event_time": self.event_time,
            "created_at": self.created_at,
            "status": self.status,
            "status_zh": STATUS_ZH.get(self.status, self.status),
            "level": self.level,
            "escalations": self.escalations,
            "notified": self.notified,
            "failed": self.failed,
            "by": self.by,
            "note": self.note,
        }


def alert_view(alert: Mapping[str, Any], partition: int | None = None) -> AlertView:
    return AlertView(
        alert_id=alert["alert_id"],
        community_id=alert["community_id"],
        alert_type=alert["alert_type"],
        severity=alert["severity"],
        gate_id=alert.get("gate_id"),
        device_id=alert.get("device_id"),
        subject=mask_token(alert.get("subject_id")),
        message_zh=alert.get("message_zh", ""),
        message_en=alert.get("message_en", ""),
        event_time=int(alert["event_time"]),
        created_at=int(alert.get("created_at") or alert["event_time"]),
        partition=partition,
        seen_ms=int(time.time() * 1000),
    )


def refresh(view: AlertView, alert: Mapping[str, Any]) -> bool:
    """A later version of an alert the console already shows (the same id re-emitted: a
    cluster with more cases, an occupancy excess cleared) replaces its message; a redelivery
    or an older version changes nothing. True when something shown changed."""
    created_at = int(alert.get("created_at") or alert["event_time"])
    message = (alert.get("message_zh", ""), alert.get("message_en", ""))
    if created_at < view.created_at or message == (view.message_zh, view.message_en):
        return False
    view.message_zh, view.message_en = message
    view.created_at = created_at
    return True


def apply_action(view: AlertView, action: Mapping[str, Any]) -> bool:
    """Fold one ``AlertAction`` record into ``view``; True when something shown changed."""
    kind = action["action"]
    detail = action.get("detail") or {}
    if view.partition is None and "partition" in detail:
        with contextlib.suppress(ValueError):
            view.partition = int(detail["partition"])
    if kind in _DISPATCHER_KINDS:
        view.routed = True
    if kind == "ROUTED":
        return False
    if kind == "NOTIFIED":
        view.notified += 1
        view.level = max(view.level, int(action.get("level") or 0))
        return True
    if kind == "DELIVERY_FAILED":
        view.failed += 1
        return True
    if kind == "ESCALATED":
        view.escalations += 1
        view.level = max(view.level, int(action.get("level") or 0))
        return True
    if kind in _STATUS_RANK and _STATUS_RANK[kind] > _STATUS_RANK.get(view.status, 0):
        view.status = kind
        view.by = ",".join(action.get("staff_ids") or [])
        if detail.get("note"):
            view.note = detail["note"]
        elif kind == "SILENCED" and detail.get("reason"):
            # why it was not paged: a silence (its matchers and reason) or an inhibition
            view.note = detail["reason"]
        return True
    if kind == "RESOLVE_REQUESTED" and detail.get("note") and not view.note:
        view.note = detail["note"]
        return True
    return False


def decision_json(decision: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "community_id": decision["community_id"],
        "gate_id": decision["gate_id"],
        "decision": decision["decision"],
        "decision_zh": DECISION_ZH.get(decision["decision"], decision["decision"]),
        "reasons": list(decision.get("reasons") or []),
        "reasons_zh": reasons_zh(decision.get("reasons") or []),
        "subject": mask_token(decision.get("subject_id")),
        "decided_at": int(decision["decided_at"]),
    }


def reasons_zh(reasons: Sequence[str]) -> str:
    """``黄码 HEALTH_CODE_YELLOW、…``: the rules behind a decision, Chinese first."""
    return "、".join(f"{ALERT_TYPE_ZH.get(r, r)} {r}" if r in ALERT_TYPE_ZH else r for r in reasons)


@dataclass(eq=False)
class Subscriber:
    can_see: Callable[[str], bool]
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False


class LiveState:
    """Alerts, their actions and recent decisions; the fold and the fan-out (no I/O)."""

    def __init__(self) -> None:
        self.alerts: dict[str, AlertView] = {}
        self._early_actions: dict[str, list[Mapping[str, Any]]] = {}
        self.decisions: dict[str, deque[dict[str, Any]]] = {}
        self.subscribers: set[Subscriber] = set()
        self.counts: dict[str, int] = {"alerts": 0, "actions": 0, "decisions": 0}

    def subscribe(self, can_see: Callable[[str], bool]) -> Subscriber:
        sub = Subscriber(can_see)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, kind: str, community_id: str, payload: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            if not sub.can_see(community_id):
                continue
            try:
                sub.queue.put_nowait((kind, payload))
            except asyncio.QueueFull:  # a stalled browser: it reconnects and reloads
                sub.dropped = True
                self.subscribers.discard(sub)

    def on_alert(self, alert: Mapping[str, Any], partition: int | None) -> AlertView:
        known = self.alerts.get(alert["alert_id"])
        if known is not None:
            if known.partition is None:
                known.partition = partition
            if refresh(known, alert):  # an early warning re-emitted as it changed (issue 20)
                self.publish("alert", known.community_id, known.to_json())
            return known
        view = alert_view(alert, partition)
        for action in self._early_actions.pop(view.alert_id, []):
            apply_action(view, action)
        self.alerts[view.alert_id] = view
        self.counts["alerts"] += 1
        if len(self.alerts) > MAX_ALERTS:
            oldest = min(self.alerts.values(), key=lambda a: a.event_time)
            del self.alerts[oldest.alert_id]
        self.publish("alert", view.community_id, view.to_json())
        return view

    def on_action(self, action: Mapping[str, Any]) -> None:
        self.counts["actions"] += 1
        view = self.alerts.get(action["alert_id"])
        if view is None:
            early = self._early_actions.setdefault(action["alert_id"], [])
            if len(early) < 50:
                early.append(action)
            return
        if apply_action(view, action):
            self.publish("action", view.community_id, view.to_json())

    def on_decision(self, decision: Mapping[str, Any]) -> None:
        self.counts["decisions"] += 1
        row = decision_json(decision)
        recent = self.decisions.setdefault(row["community_id"], deque(maxlen=RECENT_DECISIONS))
        recent.appendleft(row)
        self.publish("decision", row["community_id"], row)

    def adopt(self, view: AlertView) -> AlertView:
        """An alert read from ClickHouse: kept unless Kafka already told us about it."""
        known = self.alerts.get(view.alert_id)
        if known is not None:
            return known
        for action in self._early_actions.pop(view.alert_id, []):
            apply_action(view, action)
        self.alerts[view.alert_id] = view
        return view


class LiveFeed:
    """Follows the three topics into a ``LiveState``."""

    def __init__(self, settings: Settings, state: LiveState | None = None) -> None:
        self._s = settings
        self.state = state or LiveState()
        self._codec = Codec()
        self.ready = asyncio.Event()
        t = settings.topics
        self._records = {
            t.gate_decisions: "GateDecision",
            t.alerts: "Alert",
            t.alert_actions: "AlertAction",
        }

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            isolation_level="read_committed",
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
        )
        await consumer.start()
        try:
            await self._position(consumer)
            self.ready.set()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, messages in batches.items():
                    record_name = self._records[tp.topic]
                    for msg in messages:
                        self._take(record_name, tp.partition, msg.value)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        from fangxian.console.roster import topic_partitions

        tps: list[TopicPartition] = []
        for topic in self._records:
            tps += [
                TopicPartition(topic, p)
                for p in sorted(await topic_partitions(consumer, topic, self._s))
            ]
        consumer.assign(tps)
        back_ms = int(time.time() * 1000) - self._s.console_lookback_s * 1000
        rewind = [tp for tp in tps if tp.topic != self._s.topics.gate_decisions]
        found = await consumer.offsets_for_times(dict.fromkeys(rewind, back_ms))
        end = await consumer.end_offsets(tps)
        for tp in tps:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else end[tp])

    def _take(self, record_name: str, partition: int, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = self._codec.decode(record_name, value)
        except InvalidEvent as err:
            log.warning("console skips an undecodable %s: %s", record_name, err)
            return
        if record_name == "Alert":
            self.state.on_alert(record, partition)
        elif record_name == "AlertAction":
            self.state.on_action(record)
        else:
            self.state.on_decision(record)
