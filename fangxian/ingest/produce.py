"""Producing contract records to their topics with kafka-python (devices, loaders, simulator).

Which topic a record goes to and which field is its key is the contract (docs/contract.md,
``schemas/topics.py``); which partition a key goes to is ``schemas.partitioner.partition_for``
(the Java client's murmur2), given to the Python producers as ``KeyPartitioner`` (kafka-python)
and ``key_partitioner`` (aiokafka); a confluent-kafka producer sets ``"partitioner":
"murmur2_random"`` (``LIBRDKAFKA_PARTITIONER``)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from kafka.partitioner.abc import Partitioner

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings, Topics
from fangxian.core.timeouts import kafka_producer_timeouts
from schemas import Codec
from schemas.partitioner import partition_for
from schemas.topics import topic_and_key

#: librdkafka's name for the Java client's partitioner (its default, consistent_random, is CRC32)
LIBRDKAFKA_PARTITIONER = "murmur2_random"


def route(topics: Topics, record_name: str, record: dict[str, Any]) -> tuple[str, bytes]:
    """Topic and key of ``record`` (the table is ``schemas/topics.py``)."""
    return topic_and_key(topics, record_name, record)


def key_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """An aiokafka producer's ``partitioner``: a keyed record goes where ``partition_for``
    says, so a community's events share a partition whichever client sent them; an unkeyed
    one (the odd malformed message) to any available partition."""
    ordered = sorted(all_partitions)
    if key is None:
        return random.choice(list(available) or ordered)
    return ordered[partition_for(key, len(ordered))]


class KeyPartitioner(Partitioner):
    """``key_partitioner`` in kafka-python's partitioner interface (``RecordProducer``)."""

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if topic not in cluster.topics():
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        return key_partitioner(
            serialized_key,
            list(cluster.partitions_for_topic(topic)),
            list(cluster.available_partitions_for_topic(topic)),
        )


class RecordProducer:
    """Encodes records with the single-object codec and sends them where the contract says.

    Connecting waits ``settings.connect_timeout_s`` (``KafkaTimeoutError`` when no broker
    answers); a send to a topic the broker does not have raises ``UnknownTopicOrPartitionError``
    naming the topic.
    """

    def __init__(self, settings: Settings, codec: Codec | None = None, **config: Any) -> None:
        self._topics = settings.topics
        self._codec = codec or Codec()
        options: dict[str, Any] = {
            "linger_ms": 10,
            "batch_size": 256 * 1024,
            "acks": 1,
            "partitioner": KeyPartitioner(),
        }
        options.update(kafka_producer_timeouts(settings))
        options.update(kafka_client_kwargs(settings))  # the loader / device principal
        options.update(config)
        self._producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **options)
        self._seen_topics: set[str] = set()
        self.sent = 0

    def send(self, record_name: str, record: dict[str, Any]) -> None:
        topic, key = route(self._topics, record_name, record)
        self._send(topic, self._codec.encode(record_name, record), key)

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Bytes as a device might send them — used for the odd malformed message."""
        self._send(topic, value, key)

    def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        try:
            self._producer.send(topic, value, key=key)
        except KafkaTimeoutError as err:
            # The producer bootstrapped in __init__, so a metadata wait that runs out on the
            # first send to a topic means the broker does not have it.
            if topic not in self._seen_topics and "metadata" in str(err):
                raise UnknownTopicOrPartitionError(topic) from err
            raise
        self._seen_topics.add(topic)
        self.sent += 1

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
