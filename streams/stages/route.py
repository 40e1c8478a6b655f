"""The entry step of a decide task: validate-decode what arrived on device-topic partition *p*,
dead-letter what is bad, and sort the rest into the events task *p* decides itself and the few
it must forward. Pure; no I/O.

Device events are keyed by ``community_id`` where they enter (``schemas.topics.record_key``), so
an event normally arrives on the partition that owns its community and is decided in the same
step and transaction. An event a third-party producer put on another partition (another key, or
librdkafka's default partitioner) is forwarded *as its original bytes* to the partition of its
community on ``<app_id>-decide-reroute``, counted, and decided once by the owner.

Every decided event is copied, in the deciding transaction, to ``<app_id>-decide-events`` (each
valid event exactly once) for the sink. Headers carry what the sink needs without deciding
again: ``src`` (the original topic), ``src_tp`` / ``src_off`` (its original position) and
``redact=1`` on a FACE scan refused for missing consent. Records keep the original timestamp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas import Codec, InvalidEvent
from streams.processor import Message, dead_letter
from streams.publish import Headers, OutRecord, partition_for

SRC, SRC_TP, SRC_OFF, REDACT = "src", "src_tp", "src_off", "redact"


class Msg:
    """A consumed record as the processor reads it (attributes, not librdkafka's methods)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers


class Provenance:
    """A message of the reroute topic as the processor wants it: the *original* topic,
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


@dataclass
class Entry:
    """What one task's messages become: events to decide (decoded), records to forward, dead
    letters."""

    #: (original message, record name, decoded event) in arrival order
    mine: list[tuple[Message, str, dict[str, Any]]] = field(default_factory=list)
    forward: list[OutRecord] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


class Router:
    """Knows which partition owns a community, and sorts a task's input by it."""

    def __init__(
        self,
        codec: Codec,
        record_of: Mapping[str, str],
        reroute_topic: str,
        partitions: int,
    ) -> None:
        self._codec = codec
        self._record_of = record_of
        self._topic = reroute_topic
        self._partitions = partitions
        self._partition_cache: dict[str, int] = {}

    def partition_of(self, community_id: str) -> int:
        p = self._partition_cache.get(community_id)
        if p is None:
            if len(self._partition_cache) > 200_000:
                self._partition_cache.clear()
            p = self._partition_cache[community_id] = partition_for(
                community_id.encode(), self._partitions
            )
        return p

    def owns(self, partition: int) -> Callable[[str], bool]:
        return lambda community_id: self.partition_of(community_id) == partition

    def enter(self, messages: Iterable[Message], partition: int) -> Entry:
        """Device-topic messages of task ``partition``: validated and sorted."""
        out = Entry()
        decode = self._codec.decode
        record_of = self._record_of
        for msg in messages:
            try:
                if msg.value is None:
                    raise InvalidEvent(
                        "empty", "message has no value (tombstone on an event topic)"
                    )
                name = record_of[msg.topic]
                event = decode(name, msg.value)
            except InvalidEvent as err:
                out.dead.append(dead_letter(msg, err))
                continue
            cid: str = event["community_id"]
            p = self.partition_of(cid)
            if p == partition:
                out.mine.append((msg, name, event))
                continue
            out.forward.append(
                OutRecord(
                    self._topic,
                    cid.encode(),
                    msg.value,
                    partition=p,
                    headers=provenance_headers(msg),
                    timestamp_ms=msg.timestamp if msg.timestamp >= 0 else None,
                )
            )
        return out

    def rerouted(self, messages: Iterable[Message], into: Entry) -> None:
        """Messages of the reroute topic (validated by the task that forwarded them, which only
        the decide principal may write): decoded without checking the values again."""
        decode = self._codec.decode
        for msg in messages:
            original = Provenance(msg, header_map(msg_headers(msg)))
            name = self._record_of.get(original.topic)
            if name is None or original.value is None:
                continue
            try:
                event = decode(name, original.value, validate=False)
            except InvalidEvent as err:
                into.dead.append(dead_letter(original, err))
                continue
            into.mine.append((original, name, event))


def provenance_headers(msg: Message) -> Headers:
    return (
        (SRC, msg.topic.encode()),
        (SRC_TP, str(msg.partition).encode()),
        (SRC_OFF, str(msg.offset).encode()),
    )


def msg_headers(msg: Any) -> Sequence[tuple[str, bytes]] | None:
    headers = getattr(msg, "headers", None)
    return headers() if callable(headers) else headers
