"""A fake MQTT gate gateway: the device side of the edge's MQTT layout (docs/edge.md, "MQTT").

It logs in to the broker as its device serial, publishes each pass on
``fangxian/<community>/<device>/pass`` (QoS 1) and waits on ``…/decision`` for the answer with
its ``seq``; a pass not answered in time is kept (the gateway decided locally, as a field
gateway's offline rule does) and later replayed as ``{"events": [...]}`` until acknowledged.
Written from the documented layout, not from the adapter, so a test of the two together is a
test of the layout. Used by the tests; nothing here is imported by the edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from types import TracebackType
from typing import Any, Self

import aiomqtt


class FakeMqttGateway:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        community: str,
        device: str,
        password: str | None = None,
        root: str = "fangxian",
    ) -> None:
        self.community = community
        self.device = device
        self.pass_topic = f"{root}/{community}/{device}/pass"
        self.decision_topic = f"{root}/{community}/{device}/decision"
        self._client = aiomqtt.Client(
            host, port, username=device, password=password, identifier=f"gw-{device}"
        )
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0
        self.backlog: list[dict[str, Any]] = []

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(self.decision_topic, qos=1)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                with contextlib.suppress(ValueError):
                    await self._answers.put(json.loads(payload))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def scan(
        self,
        *,
        method: str,
        identifier: str | None = None,
        temperature_c: float | None = None,
        wait_s: float = 3.0,
        **extra: Any,
    ) -> dict[str, Any] | None:
        """One pass at the gate: the decision for it, or ``None`` when none came in
        ``wait_s`` (the pass is then kept for :meth:`replay_backlog`)."""
        event: dict[str, Any] = {
            "seq": self.next_seq(),
            "ts": int(time.time() * 1000),
            "method": method,
            **extra,
        }
        if identifier is not None:
            event["id"] = identifier
        if temperature_c is not None:
            event["temperature_c"] = temperature_c
        await self.publish({**event, "wait_ms": int(wait_s * 1000)})
        answer = await self.answer_for(str(event["seq"]), wait_s)
        if answer is None:
            self.backlog.append({**event, "offline": True})
        return answer

    async def replay_backlog(self, wait_s: float = 3.0) -> list[str]:
        """Publish the stored passes as one backlog; drop those acknowledged. Returns the
        acknowledged seqs."""
        if not self.backlog:
            return []
        await self.publish({"events": self.backlog})
        expected = {str(e["seq"]) for e in self.backlog}
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            answer = await self._next_answer(deadline - time.monotonic())
            if answer is not None and isinstance(answer.get("ack"), list):
                acked = {str(s) for s in answer["ack"]}
                if acked & expected:
                    self.backlog = [e for e in self.backlog if str(e["seq"]) not in acked]
                    return sorted(acked & expected)
        return []

    async def publish(self, payload: dict[str, Any] | bytes, topic: str | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self._client.publish(topic or self.pass_topic, body, qos=1)

    async def answer_for(self, seq: str | None, wait_s: float) -> dict[str, Any] | None:
        """The next answer carrying ``seq`` (or, for ``None``, the next error)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            answer = await self._next_answer(deadline - time.monotonic())
            if answer is None:
                return None
            if seq is None and "error" in answer:
                return answer
            if seq is not None and (str(answer.get("seq")) == seq or "error" in answer):
                return answer
        return None

    async def _next_answer(self, timeout_s: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self._answers.get(), timeout=max(timeout_s, 0.0))
        except TimeoutError:
            return None
