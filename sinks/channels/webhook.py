"""A generic JSON webhook for anything else (a console, an incident tool).

``POST <url>`` with the message as JSON and three headers: ``X-Fangxian-Timestamp`` (epoch
seconds), ``X-Fangxian-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
and ``Idempotency-Key: <delivery_id>`` — a receiver that keeps the keys it has seen makes a
resend after a dispatcher crash harmless. Any 2xx is success."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

import aiohttp

from sinks.channels.base import Channel, DeliveryError, OutgoingMessage

SIGNATURE_HEADER = "X-Fangxian-Signature"
TIMESTAMP_HEADER = "X-Fangxian-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def webhook_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class JsonWebhook(Channel):
    kind: ClassVar[str] = "webhook"
    rate_count: int = 6000  # our own receivers: a generous local limit

    def __init__(
        self, name: str, url: str, secret: str, clock_s: Callable[[], int] | None = None
    ) -> None:
        super().__init__(name)
        self._url = url
        self._secret = secret
        self._clock_s = clock_s or (lambda: int(time.time()))

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        return {
            "delivery_id": message.delivery_id,
            "severity": message.severity,
            "headline": message.headline,
            "lines": list(message.lines),
            "links": [{"staff_id": ln.staff.staff_id, "url": ln.url} for ln in message.links],
            "mentions": [m.staff_id for m in message.mentions],
        }

    async def send(self, session: aiohttp.ClientSession, message: OutgoingMessage) -> None:
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        ts = self._clock_s()
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: webhook_signature(self._secret, ts, body),
            IDEMPOTENCY_HEADER: message.delivery_id,
        }
        async with session.post(self._url, data=body, headers=headers) as response:
            if 200 <= response.status < 300:
                return
            raise DeliveryError(
                f"webhook HTTP {response.status}",
                retryable=response.status >= 500 or response.status == 429,
                code=str(response.status),
            )
