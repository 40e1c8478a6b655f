"""One batch of consumed messages → decisions, alerts, dead letters and rows. No I/O.

The decide stage (``streams/stages/decide.py``) hands each task's batch to
``EventProcessor.process`` and does the I/O with the result: it produces the messages, with the
task's changelog deltas and input offsets, in one Kafka transaction. (``rows`` are what the same
events become in ClickHouse; the sink stage builds them from the topics, tests read them here.)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fangxian.core.metrics import Metrics
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from schemas.validate import MAX_TIME_MS, MIN_TIME_MS
from streams.engine import READING, REPORT, SCAN, Item, RuleEngine

log = logging.getLogger(__name__)
_DEAD_LETTER_NS = uuid.UUID("6f1d0c52-5a56-4d0e-9a5f-1c1f0b6b1f10")
REDACTED = ""
#: bytes of a bad message kept in its dead letter (the record stays under Kafka's 1 MB)
MAX_ORIGINAL_BYTES = 256 * 1024


class Message(Protocol):
    """What the processor needs of a consumed Kafka message (aiokafka's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class DeadLetterLimitExceeded(RuntimeError):
    """Too large a share of the input is invalid: stop loudly instead of draining into the DLQ."""


@dataclass
class BatchResult:
    produce: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: int = 0
    events: int = 0
    #: event ids of FACE scans refused for missing consent (stored without the face identity)
    redacted: set[str] = field(default_factory=set)

    def add_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.rows.setdefault(table, []).extend(rows)


def dead_letter(msg: Message, err: InvalidEvent, now_ms: int | None = None) -> dict[str, Any]:
    """The DeadLetter record for ``msg``; its id is derived from the message's position, so a
    redelivered bad message produces the same record (and the same ClickHouse row).

    Building it cannot fail: a Kafka timestamp the contract refuses (−1 when the producer set
    none, 1970, after 2100) is replaced by ``now_ms`` (the wall clock if not given), clamped to
    the contract's range; the original timestamp is kept in ``detail``."""
    created_at = msg.timestamp
    detail = err.detail
    if msg.value is not None and len(msg.value) > MAX_ORIGINAL_BYTES:
        detail = f"{detail} [original {len(msg.value)} bytes, first {MAX_ORIGINAL_BYTES} kept]"
    if not isinstance(created_at, int) or not MIN_TIME_MS <= created_at < MAX_TIME_MS:
        detail = f"{detail} [kafka timestamp {created_at!r}]"
        fallback = int(time.time() * 1000) if now_ms is None else now_ms
        created_at = min(max(fallback, MIN_TIME_MS), MAX_TIME_MS - 1)
    return {
        "dead_letter_id": str(
            uuid.uuid5(_DEAD_LETTER_NS, f"{msg.topic}:{msg.partition}:{msg.offset}")
        ),
        "reason": err.reason,
        "detail": detail[:1000],
        "source_topic": msg.topic,
        "source_partition": msg.partition,
        "source_offset": msg.offset,
        # a dead letter must fit where its message did: the original is cut, never the record
        "original": (msg.value or b"")[:MAX_ORIGINAL_BYTES],
        "created_at": created_at,
    }


def rejected_row(table: str, row: dict[str, Any], reason: str, now_ms: int) -> dict[str, Any]:
    """The DeadLetter record for a row ClickHouse refused as data (the event decoded and passed
    validation, so this is a schema/server disagreement worth a person's look)."""
    identity = row.get("event_id") or row.get("alert_id") or row.get("dead_letter_id") or repr(row)
    return {
        "dead_letter_id": str(uuid.uuid5(_DEAD_LETTER_NS, f"sink:{table}:{identity}")),
        "reason": "sink_rejected",
        "detail": f"ClickHouse rejected the row for table {table}: {reason}"[:1000],
        "source_topic": f"clickhouse:{table}",
        "source_partition": -1,
        "source_offset": -1,
        "original": repr(row).encode("utf-8", "replace")[:100_000],
        "created_at": now_ms,
    }


class DeadLetterBudget:
    """Counts invalid vs all input over a sliding sample (arroyo's ``DlqLimit``)."""

    def __init__(self, max_ratio: float, min_sample: int) -> None:
        self.max_ratio = max_ratio
        self.min_sample = min_sample
        self._window: deque[tuple[int, int]] = deque()
        self._total = 0
        self._bad = 0

    def record(self, total: int, bad: int) -> None:
        self._window.append((total, bad))
        self._total += total
        self._bad += bad
        while len(self._window) > 1 and self._total - self._window[0][0] >= self.min_sample:
            t, b = self._window.popleft()
            self._total -= t
            self._bad -= b
        if self._total >= self.min_sample and self._bad > self.max_ratio * self._total:
            raise DeadLetterLimitExceeded(
                f"{self._bad} of the last {self._total} messages were invalid "
                f"(limit {self.max_ratio:.0%}) — stopping (无效消息比例过高，停止处理)"
            )


class EventProcessor:
    """Decodes a batch, runs the rules, and says what to produce and which rows to store."""

    def __init__(
        self, settings: Settings, codec: Codec, engine: RuleEngine, metrics: Metrics
    ) -> None:
        t = settings.topics
        self._topics = t
        self._codec = codec
        self._engine = engine
        self._metrics = metrics
        self._record_of = {
            t.gate_scans: "GateScan",
            t.temperature_readings: "TemperatureReading",
            t.health_reports: "HealthReport",
        }
        self._kind_of = {
            t.gate_scans: SCAN,
            t.temperature_readings: READING,
            t.health_reports: REPORT,
        }
        self._budget = DeadLetterBudget(settings.dlq_max_ratio, settings.dlq_min_sample)

    @property
    def topics(self) -> list[str]:
        return list(self._record_of)

    def process(self, messages: Sequence[Message], *, validated: bool = False) -> BatchResult:
        """One poll: scans, readings and reports merged in one event-time order and run
        through the rules in one call (a reading a few minutes older than a scan of the same
        poll is not late because of it).

        ``validated``: the bytes passed the value checks already (the decide stage's route
        step checked them before it forwarded them to its internal topic, which only the
        decide principal may write); they are decoded without checking them again."""
        decoded, items, dead = self._decode(messages, validate=not validated)
        self._budget.record(len(messages), len(dead))
        result = self.process_decoded(decoded, items, len(messages))
        self._add_dead_letters(result, dead)
        return result

    def process_decoded(
        self, decoded: dict[str, list[dict[str, Any]]], items: list[Item], count: int
    ) -> BatchResult:
        """The rules over events decoded (and validated) already: ``decoded`` per topic, and
        ``items`` (kind, event, Kafka timestamp) — sorted here into one event-time order."""
        result = BatchResult(events=count)
        t = self._topics
        for topic, events in decoded.items():
            if events:
                self._metrics.events_in.labels(topic=topic).inc(len(events))
        items.sort(key=self._engine.sort_key)
        if items:
            out = self._engine.on_events(items)
            self._emit(result, out.decisions, out.alerts, out.late)
            scans = decoded[t.gate_scans]
            if scans:
                redact = result.redacted = {
                    d["event_id"] for d in out.decisions if "FACE_CONSENT_MISSING" in d["reasons"]
                }
                result.add_rows(
                    "gate_scans", [_redacted(s) if s["event_id"] in redact else s for s in scans]
                )
            result.add_rows("temperature_readings", decoded[t.temperature_readings])
            result.add_rows("health_reports", decoded[t.health_reports])
        self._metrics.batch_events.observe(count)
        return result

    @property
    def kind_of(self) -> dict[str, str]:
        """Topic → the engine's item kind (scan, reading, report)."""
        return self._kind_of

    @property
    def record_of(self) -> dict[str, str]:
        """Topic → the contract record name."""
        return self._record_of

    def _decode(
        self, messages: Sequence[Message], *, validate: bool = True
    ) -> tuple[dict[str, list[dict[str, Any]]], list[Item], list[dict[str, Any]]]:
        """Events per topic (for the rows), all events merged in event-time order for the
        rules (with their Kafka timestamps), and dead letters for what does not decode. A poll
        interleaves partitions and topics arbitrarily; the rules see one order."""
        decoded: dict[str, list[dict[str, Any]]] = {topic: [] for topic in self._record_of}
        items: list[Item] = []
        dead: list[dict[str, Any]] = []
        decode = self._codec.decode
        kind_of = self._kind_of
        for msg in messages:
            try:
                if msg.value is None:
                    raise InvalidEvent(
                        "empty", "message has no value (tombstone on an event topic)"
                    )
                event = decode(self._record_of[msg.topic], msg.value, validate=validate)
            except InvalidEvent as err:
                dead.append(dead_letter(msg, err))
                continue
            decoded[msg.topic].append(event)
            items.append((kind_of[msg.topic], event, msg.timestamp))
        items.sort(key=self._engine.sort_key)
        return decoded, items, dead

    def warm_up(self, messages: Sequence[Message]) -> int:
        """Feed already-committed events to the rules to rebuild window state (entry counts,
        pending rechecks, report history) after a restart or rebalance. Outputs are discarded:
        they were produced when the events were first processed. Returns events applied."""
        _, items, _ = self._decode(messages)  # bad ones were dead-lettered the first time round
        self._engine.on_events(items)
        return len(items)

    def tick(self, now_ms: int) -> BatchResult:
        """Timer-driven rules (overdue reports, silent devices, rechecks that never came)."""
        result = BatchResult()
        out = self._engine.tick(now_ms)
        self._emit(result, out.decisions, out.alerts, out.late)
        return result

    def dead_letter_result(self, dead: list[dict[str, Any]]) -> BatchResult:
        """The outputs of dead letters found elsewhere (the decide stage's route step)."""
        result = BatchResult()
        self._add_dead_letters(result, dead)
        return result

    def sink_rejections(
        self, table: str, rejected: list[tuple[dict[str, Any], str]], now_ms: int
    ) -> BatchResult:
        """Dead letters for rows ClickHouse refused (written like any other dead letter)."""
        result = BatchResult()
        self._add_dead_letters(result, [rejected_row(table, r, why, now_ms) for r, why in rejected])
        return result

    def _encode_output(self, record_name: str, record: dict[str, Any]) -> bytes | None:
        """An output the contract refuses is a bug in the rules: count it, log it loudly and
        keep the worker deciding for everyone else."""
        try:
            return self._codec.encode(record_name, record)
        except InvalidEvent as err:
            self._metrics.dead_letters.labels(reason="invalid_output").inc()
            _encode_output_failed(record_name, record, err)
            return None

    def _add_dead_letters(self, result: BatchResult, dead: list[dict[str, Any]]) -> None:
        if not dead:
            return
        encode = self._codec.encode
        for reason, n in Counter(d["reason"] for d in dead).items():
            self._metrics.dead_letters.labels(reason=reason).inc(n)
        for d in dead:
            result.produce.append(
                (self._topics.dead_letters, d["source_topic"].encode(), encode("DeadLetter", d))
            )
        result.dead_letters += len(dead)
        result.add_rows("dead_letters", dead)

    def _emit(
        self,
        result: BatchResult,
        decisions: list[dict[str, Any]],
        alerts: list[dict[str, Any]],
        late: int,
    ) -> None:
        t = self._topics
        if decisions:
            outcomes: Counter[str] = Counter()
            kept = []
            for d in decisions:
                value = self._encode_output("GateDecision", d)
                if value is not None:
                    outcomes[d["decision"]] += 1
                    result.produce.append((t.gate_decisions, d["subject_id"].encode(), value))
                    kept.append(d)
            result.add_rows("gate_decisions", kept)
            for outcome, n in outcomes.items():  # one metric update per label per batch
                self._metrics.decisions.labels(decision=outcome).inc(n)
        if alerts:
            types: Counter[str] = Counter()
            kept = []
            for a in alerts:
                value = self._encode_output("Alert", a)
                if value is not None:
                    types[a["alert_type"]] += 1
                    result.produce.append((t.alerts, a["community_id"].encode(), value))
                    kept.append(a)
            result.add_rows("alerts", kept)
            for alert_type, n in types.items():
                self._metrics.alerts.labels(alert_type=alert_type).inc(n)
        if late:
            self._metrics.late_events.inc(late)


def _encode_output_failed(record_name: str, record: dict[str, Any], err: InvalidEvent) -> None:
    log.error(
        "the rules produced an invalid %s (a bug, not bad input) — dropped, worker continues: "
        "%s; event_id=%s",
        record_name,
        err,
        record.get("event_id") or record.get("alert_id"),
    )


def _redacted(scan: dict[str, Any]) -> dict[str, Any]:
    """A FACE scan without consent keeps no face-derived identity: a rejection record only."""
    return {**scan, "subject_id": REDACTED, "household_id": None, "temperature_c": None}
