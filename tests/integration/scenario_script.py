"""Scripted rule scenarios against the real worker: labelled records, produced phase by phase
(each phase only once the worker has processed the previous one), and the decisions and alerts
read back from the output topics.

Labels name things by their role (``"fever.scan"``, ``"fever.rid"``) so a test table can say what
it expects without knowing the generated ids.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from fangxian.core.codes import CREDIT_CODE_ALPHABET, credit_code_check_char
from fangxian.core.settings import Settings, Topics
from fangxian.ingest.produce import RecordProducer
from infra.topics import create_topics, topic_specs
from schemas import Codec
from schemas.topics import EVENT_TABLES, ROUTE_OF, record_key
from streams.runtime import Runtime
from tests.integration.pipeline_harness import PipelineRun, run_pipeline_until

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# as in tests/conftest.py: few partitions keep group joins quick
EVENT_PARTITIONS = 3
REFERENCE_PARTITIONS = 2


Record = dict[str, Any]
Condition = Callable[[Runtime, PipelineRun], bool]


def credit_code(body: str) -> str:
    """A GB 32100 Unified Social Credit Code: the 17-character ``body`` plus its check char."""
    assert len(body) == 17 and all(c in CREDIT_CODE_ALPHABET for c in body), body
    return body + credit_code_check_char(body)


class Labels:
    """Label → generated id (32-hex subject tokens, UUID event ids), and back."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._labels: dict[str, str] = {}

    def _new(self, label: str, value: str) -> str:
        if label in self._ids:
            raise ValueError(f"label {label!r} used twice")
        self._ids[label] = value
        self._labels[value] = label
        return value

    def token(self, label: str) -> str:
        """A pseudonymous token (what the HMAC of an ID number looks like), made once."""
        return self._ids[label] if label in self._ids else self._new(label, uuid.uuid4().hex)

    def event_id(self, label: str) -> str:
        return self._new(label, str(uuid.uuid4()))

    def __getitem__(self, label: str) -> str:
        return self._ids[label]

    def label_of(self, value: str | None) -> str | None:
        return None if value is None else self._labels.get(value, value)


# ---------------------------------------------------------------------------- records


def gate_scan(
    labels: Labels,
    label: str,
    *,
    community: str,
    subject: str,
    t: int,
    direction: str = "IN",
    subject_type: str = "RESIDENT",
    method: str = "QR",
    health_code: str = "GREEN",
    temperature_c: float | None = 36.5,
    household: str | None = None,
    face_consent: bool = False,
    gate: str = "east-gate",
    device: str = "qr-east-01",
) -> Record:
    return {
        "event_id": labels.event_id(label),
        "community_id": community,
        "gate_id": gate,
        "device_id": device,
        "direction": direction,
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": household,
        "method": method,
        "health_code": health_code,
        "face_consent": face_consent,
        "temperature_c": temperature_c,
        "event_time": t,
    }


def temperature_reading(
    labels: Labels,
    label: str,
    *,
    community: str,
    subject: str | None,
    t: int,
    temperature_c: float,
    gate: str = "east-gate",
    device: str = "gun-east-03",
    sensor: str = "INFRARED_HANDHELD",
) -> Record:
    return {
        "event_id": labels.event_id(label),
        "community_id": community,
        "gate_id": gate,
        "device_id": device,
        "subject_id": subject,
        "temperature_c": temperature_c,
        "ambient_c": None,
        "sensor": sensor,
        "event_time": t,
    }


def health_report(
    labels: Labels,
    label: str,
    *,
    community: str,
    resident: str,
    t: int,
    day: int,
    symptoms: Sequence[str] = (),
    temperature_c: float | None = 36.6,
) -> Record:
    return {
        "event_id": labels.event_id(label),
        "community_id": community,
        "resident_id": resident,
        "report_date": day,
        "temperature_c": temperature_c,
        "symptoms": list(symptoms),
        "event_time": t,
    }


def resident(
    resident_id: str,
    *,
    community: str,
    household: str,
    updated_at: int,
    status: str = "NORMAL",
    observation_start: int | None = None,
    face_consent: bool = False,
) -> Record:
    return {
        "resident_id": resident_id,
        "community_id": community,
        "household_id": household,
        "status": status,
        "observation_start": observation_start,
        "key_groups": [],
        "face_consent": face_consent,
        "updated_at": updated_at,
    }


def visitor_pass(
    pass_id: str,
    *,
    community: str,
    host: str,
    valid_from: int,
    valid_until: int,
    updated_at: int,
    max_entries: int = 2,
    revoked: bool = False,
) -> Record:
    return {
        "pass_id": pass_id,
        "community_id": community,
        "host_resident_id": host,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "max_entries": max_entries,
        "revoked": revoked,
        "updated_at": updated_at,
    }


def vehicle(vehicle_id: str, *, community: str, valid_until: int | None, updated_at: int) -> Record:
    return {
        "vehicle_id": vehicle_id,
        "community_id": community,
        "owner_resident_id": None,
        "valid_until": valid_until,
        "updated_at": updated_at,
    }


def community_rules(community: str, *, updated_at: int, **changes: Any) -> Record:
    """A CommunityRules record: the contract's defaults (the codec fills them) plus ``changes``."""
    return {"community_id": community, "updated_at": updated_at, **changes}


# ---------------------------------------------------------------------------- the script


@dataclass
class Phase:
    """Records produced together, once everything before them has been processed."""

    records: list[tuple[str, Record]] = field(default_factory=list)

    def add(self, record_name: str, record: Record) -> Record:
        self.records.append((record_name, record))
        return record


class Script:
    """Produces its phases one after another while the worker runs.

    ``step`` is the ``done`` condition for ``run_pipeline_until``: it produces the next phase
    once the worker has processed every record produced so far (an event: its row reached the
    sink buffer; a reference record: the worker's reference store holds that version), and
    returns True once all phases are processed and ``until`` holds.
    """

    def __init__(
        self, settings: Settings, phases: Sequence[Phase], until: Condition | None = None
    ) -> None:
        self.settings = settings
        self.phases = list(phases)
        self._until = until
        self._next = 0
        self._producer: RecordProducer | None = None
        self.waiting: list[str] = []

    def records(self, record_name: str) -> list[Record]:
        """Every record of ``record_name`` in the script (a re-sent one as often as sent)."""
        return [r for p in self.phases for name, r in p.records if name == record_name]

    def times_sent(self, event_id: str) -> int:
        return sum(1 for p in self.phases for _, r in p.records if r.get("event_id") == event_id)

    def step(self, runtime: Runtime, run: PipelineRun) -> bool:
        produced = [rec for p in self.phases[: self._next] for rec in p.records]
        self.waiting = unprocessed(runtime, run, produced)
        if self.waiting:
            return False
        if self._next < len(self.phases):
            self._produce(self.phases[self._next])
            self._next += 1
            return False
        self.close()
        return self._until is None or self._until(runtime, run)

    def status(self) -> str:
        """Where the script is, for a failure message."""
        return (
            f"{self._next} of {len(self.phases)} phases produced; "
            f"not yet processed: {self.waiting[:10]}"
        )

    def _produce(self, phase: Phase) -> None:
        if self._producer is None:
            self._producer = RecordProducer(self.settings)
        for name, record in phase.records:
            self._producer.send(name, record)
        self._producer.flush()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


def unprocessed(
    runtime: Runtime, run: PipelineRun, records: Sequence[tuple[str, Record]]
) -> list[str]:
    """Which of ``records`` (as ``name:id``) the worker has not processed yet."""
    seen: dict[str, set[str]] = {}
    missing: list[str] = []
    for name, record in records:
        table = EVENT_TABLES.get(name)
        if table is not None:
            if table not in seen:
                seen[table] = {row["event_id"] for row in run.rows(table)}
            if record["event_id"] not in seen[table]:
                missing.append(f"{name}:{record['event_id']}")
            continue
        kind = str(ROUTE_OF[name].kind)
        key = record_key(name, record).decode()  # a vehicle's: community|plate token
        held = runtime.store.records[kind].get(key)
        # a later version (the rules change) also means this one was read
        if held is None or held["updated_at"] < record["updated_at"]:
            missing.append(f"{name}:{key}")
    return missing


def run_script(
    settings: Settings, script: Script, timeout_s: float = 60.0, **kwargs: Any
) -> tuple[Runtime, PipelineRun]:
    """Run the real worker until ``script`` is done; a timeout says where the script stood."""
    try:
        return asyncio.run(run_pipeline_until(settings, script.step, timeout_s=timeout_s, **kwargs))
    except AssertionError as err:
        raise AssertionError(f"{err}; {script.status()}") from err
    finally:
        script.close()


# ---------------------------------------------------------------------------- read back


class Outputs(NamedTuple):
    decisions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    ends: dict[str, dict[int, int]]  # topic → partition → end offset when read

    def decisions_for(self, event_id: str) -> list[dict[str, Any]]:
        return [d for d in self.decisions if d["event_id"] == event_id]


def read_topic(
    settings: Settings,
    topic: str,
    record_name: str,
    start: Mapping[int, int] | None = None,
    timeout_s: float = 30.0,
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Every record on ``topic`` from ``start`` (partition → offset; default the beginning) to
    its end offsets now, decoded; and those end offsets."""
    codec = Codec()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",  # what the decide stage committed, nothing aborted
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, (start or {}).get(tp.partition, 0))
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout_s}s")
            for messages in consumer.poll(timeout_ms=500).values():
                records.extend(codec.decode(record_name, m.value) for m in messages)
        return records, {tp.partition: ends[tp] for tp in partitions}
    finally:
        consumer.close()


def read_outputs(settings: Settings, since: Outputs | None = None) -> Outputs:
    """Decisions and alerts on the output topics (after the end offsets of ``since``)."""
    t = settings.topics
    decisions, d_ends = read_topic(
        settings, t.gate_decisions, "GateDecision", since.ends[t.gate_decisions] if since else None
    )
    alerts, a_ends = read_topic(
        settings, t.alerts, "Alert", since.ends[t.alerts] if since else None
    )
    return Outputs(decisions, alerts, {t.gate_decisions: d_ends, t.alerts: a_ends})


# ---------------------------------------------------------------------------- topics


@contextmanager
def scenario_topics(bootstrap: str) -> Iterator[Settings]:
    """Like the ``topics`` fixture, for a module-scoped run: this prefix's topics, deleted after."""
    name = f"s{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka_bootstrap=bootstrap,
        app_id=f"fangxian-{name}",
        topics=Topics().with_prefix(f"{name}."),
        event_partitions=EVENT_PARTITIONS,
        reference_partitions=REFERENCE_PARTITIONS,
    )
    specs = topic_specs(settings)
    create_topics(bootstrap, specs)
    try:
        yield settings
    finally:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fangxian-scenario-cleanup")
        try:
            admin.delete_topics([s.name for s in specs], raise_errors=False)
        finally:
            admin.close()
