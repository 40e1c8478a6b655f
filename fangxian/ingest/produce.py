"""Producing contract records to their topics with kafka-python (devices, loaders, simulator).

Which topic a record goes to and which field is its key is the contract (docs/contract.md)."""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings, Topics
from schemas import Codec
from schemas.topics import topic_and_key


def route(topics: Topics, record_name: str, record: dict[str, Any]) -> tuple[str, bytes]:
    """Topic and key of ``record`` (the table is ``schemas/topics.py``)."""
    return topic_and_key(topics, record_name, record)


class RecordProducer:
    """Encodes records with the single-object codec and sends them where the contract says."""

    def __init__(self, settings: Settings, codec: Codec | None = None, **config: Any) -> None:
        self._topics = settings.topics
        self._codec = codec or Codec()
        options: dict[str, Any] = {"linger_ms": 10, "batch_size": 256 * 1024, "acks": 1}
        options.update(kafka_client_kwargs(settings))  # the loader / device principal
        options.update(config)
        self._producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **options)
        self.sent = 0

    def send(self, record_name: str, record: dict[str, Any]) -> None:
        topic, key = route(self._topics, record_name, record)
        self._producer.send(topic, self._codec.encode(record_name, record), key=key)
        self.sent += 1

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Bytes as a device might send them — used for the odd malformed message."""
        self._producer.send(topic, value, key=key)
        self.sent += 1

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
