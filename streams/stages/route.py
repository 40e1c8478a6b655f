"""The route step of the decide stage: validate-decode an event from a device topic, dead-letter
what is bad, and forward the *original bytes* keyed by ``community_id`` to the internal
``<app_id>-decide-events`` topic, where every event of a community is in one partition (so one
task sees a whole household, and a community's timers have one owner). Pure; no I/O.

Headers carry what the rules step and the sink need without decoding twice:
``src`` (the original topic), ``src_tp`` (original partition), ``src_off`` (original offset), and
``redact=1`` on a FACE scan without consent (the sink stores it without the face-derived
identity). The record keeps the original Kafka timestamp.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas import Codec, InvalidEvent
from streams.processor import Message, dead_letter
from streams.publish import Headers, OutRecord, partition_for
from streams.rules.gate_access import check_face_consent

SRC, SRC_TP, SRC_OFF, REDACT = "src", "src_tp", "src_off", "redact"


class Provenance:
    """A message of the internal topic as the processor wants it: the *original* topic,
    partition and offset (dead-letter ids and provenance stay those of the device's message)."""

    __slots__ = ("key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, msg: Message, headers: Mapping[str, bytes]) -> None:
        self.topic = headers[SRC].decode()
        self.partition = int(headers[SRC_TP])
        self.offset = int(headers[SRC_OFF])
        self.key = msg.key
        self.value = msg.value
        self.timestamp = msg.timestamp


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, bytes]:
    return dict(headers or ())


class Router:
    """Places each valid event on its community's partition of the internal topic."""

    def __init__(
        self,
        codec: Codec,
        record_of: Mapping[str, str],
        events_topic: str,
        partitions: int,
        residents: Callable[[str], Mapping[str, Any] | None],
    ) -> None:
        self._codec = codec
        self._record_of = record_of
        self._topic = events_topic
        self._partitions = partitions
        self._residents = residents
        self._partition_cache: dict[str, int] = {}

    def partition_of(self, community_id: str) -> int:
        p = self._partition_cache.get(community_id)
        if p is None:
            p = self._partition_cache[community_id] = partition_for(
                community_id.encode(), self._partitions
            )
        return p

    def route(self, messages: Sequence[Message]) -> tuple[list[OutRecord], list[dict[str, Any]]]:
        """(records for the internal topic, dead-letter records) for ``messages``."""
        out: list[OutRecord] = []
        dead: list[dict[str, Any]] = []
        decode = self._codec.decode
        for msg in messages:
            try:
                if msg.value is None:
                    raise InvalidEvent(
                        "empty", "message has no value (tombstone on an event topic)"
                    )
                name = self._record_of[msg.topic]
                event = decode(name, msg.value)
            except InvalidEvent as err:
                dead.append(dead_letter(msg, err))
                continue
            cid: str = event["community_id"]
            headers: Headers = (
                (SRC, msg.topic.encode()),
                (SRC_TP, str(msg.partition).encode()),
                (SRC_OFF, str(msg.offset).encode()),
            )
            if name == "GateScan" and self._face_refused(event):
                headers += ((REDACT, b"1"),)
            out.append(
                OutRecord(
                    self._topic,
                    cid.encode(),
                    msg.value,
                    partition=self.partition_of(cid),
                    headers=headers,
                    timestamp_ms=msg.timestamp if msg.timestamp >= 0 else None,
                )
            )
        return out, dead

    def _face_refused(self, scan: Mapping[str, Any]) -> bool:
        if scan.get("method") != "FACE" or scan.get("face_consent"):
            return False
        return check_face_consent(scan, self._residents(scan["subject_id"])) is not None
