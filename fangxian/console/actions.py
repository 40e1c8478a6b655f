"""Acknowledge and resolve from the console, on the same API as the dispatcher's signed
links: an ``ACK_REQUESTED`` / ``RESOLVE_REQUESTED`` record (``streams.dispatch.machine.
request_record``) in the ``alert.actions`` partition the alert came from, which the dispatcher
that holds the alert answers with ACKNOWLEDGED / RESOLVED (and stops escalating). The console
marks its requests ``via=console`` and a resolution carries the staff member's note."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings
from schemas import Codec

NOTE_MAX_CHARS = 500
KINDS = {"ack": "ACK_REQUESTED", "resolve": "RESOLVE_REQUESTED"}


def console_request(
    kind: str, alert_id: str, staff_id: str, partition: int, now_ms: int, note: str = ""
) -> dict[str, Any]:
    """The dispatcher's request record, marked as coming from the console."""
    from streams.dispatch.machine import request_record

    record = request_record(KINDS[kind], alert_id, staff_id, partition, now_ms)
    detail = dict(record["detail"], via="console")
    if note:
        detail["note"] = note[:NOTE_MAX_CHARS]
    record["detail"] = detail
    return record


class ActionWriter:
    """Produces console requests to ``alert.actions`` (acks=all: the answer to the browser
    comes after the broker has the record)."""

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._codec = Codec()
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            acks="all",
            linger_ms=0,
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def alerts_partition(self, community_id: str) -> int:
        """Where the default partitioner put an alert keyed by its community (the contract's
        key of ``Alert``), for an alert whose partition the console did not see."""
        assert self._producer is not None
        parts = sorted(await self._producer.partitions_for(self._s.topics.alerts))
        return int(self._partitioner(community_id.encode(), parts, parts))

    async def request(
        self, kind: str, alert_id: str, staff_id: str, partition: int, note: str = ""
    ) -> dict[str, Any]:
        assert self._producer is not None
        record = console_request(kind, alert_id, staff_id, partition, int(time.time() * 1000), note)
        await self._producer.send_and_wait(
            self._s.topics.alert_actions,
            self._codec.encode("AlertAction", record),
            key=alert_id.encode(),
            partition=partition,
        )
        return record
