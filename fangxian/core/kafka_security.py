"""Kafka client security options from ``Settings``: one place that knows how the project's two
Kafka clients spell authentication and TLS, so every producer, consumer and admin client in
fangxian connects the same way.

>>> KafkaProducer(bootstrap_servers=s.kafka_bootstrap, **kafka_client_kwargs(s))
>>> AIOKafkaConsumer(..., bootstrap_servers=s.kafka_bootstrap, **kafka_client_kwargs(s, "aiokafka"))

Only the security keys are returned (never ``bootstrap_servers``), so callers keep their own
tuning arguments. PLAINTEXT gives ``{"security_protocol": "PLAINTEXT"}``, which both clients
take as their default.
"""

from __future__ import annotations

from typing import Any, Literal

from fangxian.core.settings import Settings

Client = Literal["kafka-python", "aiokafka"]

PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
SASL_MECHANISMS = frozenset({"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"})


class KafkaSecurityError(ValueError):
    """The Kafka security settings do not make a usable client configuration."""


def kafka_client_kwargs(settings: Settings, client: Client = "kafka-python") -> dict[str, Any]:
    """Keyword arguments for a kafka-python or aiokafka client from ``settings``.

    Raises KafkaSecurityError for an unknown protocol or mechanism, or SASL without a user
    name or password (a client that would only fail at its first request, less clearly).
    """
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(
            f"FANGXIAN_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r}: "
            f"expected one of {', '.join(sorted(PROTOCOLS))}"
        )
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism.upper()
        if mechanism not in SASL_MECHANISMS:
            raise KafkaSecurityError(
                f"FANGXIAN_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r}: expected one "
                f"of {', '.join(sorted(SASL_MECHANISMS))}"
            )
        if not settings.kafka_username or not settings.kafka_password:
            raise KafkaSecurityError(
                f"{protocol} needs FANGXIAN_KAFKA_USERNAME and FANGXIAN_KAFKA_PASSWORD (or "
                "FANGXIAN_KAFKA_PASSWORD_FILE) — Kafka 用户名或密码未设置"
            )
        kwargs.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=settings.kafka_username,
            sasl_plain_password=settings.kafka_password,
        )
    if protocol.endswith("SSL"):
        cafile = settings.kafka_ssl_cafile or None
        if client == "aiokafka":
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(cafile=cafile)
        else:
            kwargs.update(ssl_check_hostname=True, ssl_cafile=cafile)
    return kwargs


def for_principal(settings: Settings, username: str, password: str) -> Settings:
    """``settings`` with SASL credentials for ``username`` (plaintext becomes SASL_PLAINTEXT)."""
    protocol = settings.kafka_security_protocol.upper()
    if not protocol.startswith("SASL_"):
        protocol = "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT"
    return settings.replace(
        kafka_security_protocol=protocol, kafka_username=username, kafka_password=password
    )


def confluent_config(settings: Settings) -> dict[str, Any]:
    """The same security settings in librdkafka's spelling (confluent-kafka clients), with the
    bootstrap servers: ``Producer({**confluent_config(s), "acks": "all"})``."""
    kwargs = kafka_client_kwargs(settings)
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": kwargs["security_protocol"].lower(),
    }
    if "sasl_mechanism" in kwargs:
        config.update(
            {
                "sasl.mechanism": kwargs["sasl_mechanism"],
                "sasl.username": kwargs["sasl_plain_username"],
                "sasl.password": kwargs["sasl_plain_password"],
            }
        )
    if kwargs.get("ssl_cafile"):
        config["ssl.ca.location"] = kwargs["ssl_cafile"]
    return config
