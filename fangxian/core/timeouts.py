"""How long the Kafka and ClickHouse clients wait for a service before they give up, from the one
setting ``connect_timeout_s``. Short on purpose: a wrong address or a stopped service should be
reported in seconds, not after the clients' own 30–60 s defaults."""

from __future__ import annotations

from fangxian.core.settings import Settings

# A producer's send() waits this long for a topic's metadata (and for buffer space). Longer than
# a connect: the broker answered, and a busy broker may need a moment to drain the buffer.
MIN_PRODUCER_BLOCK_MS = 10_000


def connect_timeout_ms(settings: Settings) -> int:
    return max(1, int(settings.connect_timeout_s * 1000))


def kafka_admin_timeouts(settings: Settings) -> dict[str, int]:
    """kafka-python ``KafkaAdminClient`` / ``KafkaConsumer`` options: the first bootstrap."""
    return {"bootstrap_timeout_ms": connect_timeout_ms(settings)}


def kafka_producer_timeouts(settings: Settings) -> dict[str, int]:
    """kafka-python ``KafkaProducer`` options: the bootstrap, and how long ``send`` may block
    waiting for a topic's metadata (a missing topic ends there)."""
    ms = connect_timeout_ms(settings)
    return {"bootstrap_timeout_ms": ms, "max_block_ms": max(2 * ms, MIN_PRODUCER_BLOCK_MS)}
