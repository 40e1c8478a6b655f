"""The edge's MQTT client: passes in from the broker, answers out (docs/edge.md, "MQTT").

It subscribes to every device's pass topic (``fangxian/+/+/pass``, QoS 1), turns each message
into a :class:`~fangxian.edge.adapter.DeviceRequest` (``method="PUBLISH"``, ``path`` = the
topic, ``body`` = the payload) and hands it to the edge service's request handler — the same
one the HTTP routes use, so the register check, pseudonyms, the outbox and the wait for the
decision are the service's. What the handler returns (an answer or a refusal) is published on
the device's decision topic (QoS 1, not retained).

Messages are handled concurrently (a pass waits for its decision; the next one must not wait
behind it), at most ``max_in_flight`` at a time. The session is persistent (``clean_session``
off, a fixed client id) so the broker keeps QoS 1 passes while the edge restarts; with
``shared_group`` several edge processes share the subscription (``$share/<group>/…``). A lost
connection is retried with backoff until the task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt

from fangxian.edge.adapter import DeviceRequest, DeviceResponse
from fangxian.edge.adapters.mqtt import TOPIC_ROOT, pass_subscription, reply_topic

log = logging.getLogger(__name__)

#: the edge service's request handler: the same for HTTP devices and MQTT gateways
RequestHandler = Callable[[DeviceRequest], Awaitable[DeviceResponse]]


@dataclass(frozen=True, slots=True)
class MqttTransportConfig:
    """Where the broker is and how the edge logs in (from the edge's settings)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "fangxian-edge"
    topic_root: str = TOPIC_ROOT
    shared_group: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 30
    max_in_flight: int = 256
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    def __repr__(self) -> str:  # the password stays out of logs
        return f"MqttTransportConfig(host={self.host!r}, port={self.port}, user={self.username!r})"

    @property
    def subscription(self) -> str:
        topic = pass_subscription(self.topic_root)
        return f"$share/{self.shared_group}/{topic}" if self.shared_group else topic


async def run_mqtt_transport(
    config: MqttTransportConfig,
    handle: RequestHandler,
    *,
    connected: asyncio.Event | None = None,
) -> None:
    """Serve MQTT gateways until cancelled; ``connected`` is set each time the subscription is
    in place (tests and the service's readiness wait on it)."""
    delay = config.reconnect_min_s
    while True:
        try:
            await _session(config, handle, connected)
        except aiomqtt.MqttError as err:
            if connected is not None:
                connected.clear()
            log.warning(
                "MQTT broker %s:%d: %s; reconnecting in %.1f s",
                config.host,
                config.port,
                err,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.reconnect_max_s)
        else:
            delay = config.reconnect_min_s


async def _session(
    config: MqttTransportConfig, handle: RequestHandler, connected: asyncio.Event | None
) -> None:
    limit = asyncio.Semaphore(config.max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    async with aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=config.password,
        identifier=config.client_id,
        clean_session=False,
        keepalive=config.keepalive_s,
        tls_context=config.tls,
    ) as client:
        await client.subscribe(config.subscription, qos=1)
        log.info("MQTT: subscribed to %s on %s:%d", config.subscription, config.host, config.port)
        if connected is not None:
            connected.set()
        try:
            async for message in client.messages:
                await limit.acquire()
                task = asyncio.create_task(_handle_one(client, message, handle, limit))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)


async def _handle_one(
    client: aiomqtt.Client,
    message: aiomqtt.Message,
    handle: RequestHandler,
    limit: asyncio.Semaphore,
) -> None:
    try:
        topic = message.topic.value
        answer_to = reply_topic(topic)
        payload = message.payload
        body = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        request = DeviceRequest(
            method="PUBLISH",
            path=topic,
            headers={"content-type": "application/json"},
            body=bytes(body),
        )
        response = await handle(request)
        if answer_to is None:
            # not a pass topic of the layout (the subscription makes this rare): nowhere to
            # answer; the handler has already counted the refusal
            return
        await client.publish(answer_to, response.body, qos=1, retain=False)
    except aiomqtt.MqttError as err:  # the connection went: the device times out and retries
        log.warning("MQTT: could not publish an answer: %s", err)
    except Exception as err:  # one bad message must not end the transport
        # the type only: an exception's text might quote the payload (raw identifiers)
        log.error("MQTT: handling a pass failed (%s)", type(err).__name__)
    finally:
        limit.release()
