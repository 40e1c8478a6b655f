"""The fake Dahua and ZKTeco terminals against their adapters over real HTTP on loopback.

The server here stands in for the edge service (register check, refusals, "cannot store now")
so the device side — a terminal that keeps what was not answered and sends it again, a PUSH
terminal that takes only a plain ``OK`` — meets the adapter as it will in the field. The fakes
were written from the protocol, not from the adapters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from fangxian.edge.adapter import (
    DeviceAdapter,
    DeviceRequest,
    MalformedRequest,
    NativeEvent,
    RefusalReason,
)
from fangxian.edge.adapters.dahua import DahuaAdapter
from fangxian.edge.adapters.zkteco import ZktecoAdapter
from infra.fake_dahua import FakeDahuaTerminal
from infra.fake_zkteco import FakeZkTerminal
from infra.ports import LOOPBACK, free_port

DAHUA_SERIAL = "8E0A5C1PAJ00042"
ZK_SN = "CQZ7231260012"
RESIDENT = "R7f3c9a2b"


@dataclass
class StandIn:
    """Routes by path prefix to an adapter; refuses unknown devices, malformed requests, and
    everything while ``unavailable``; remembers the events it took and the refusals."""

    adapters: tuple[DeviceAdapter, ...]
    known: set[str]
    unavailable: bool = False
    json_answers: bool = False  # a broken server answering PUSH terminals in JSON
    commands: list[str] = field(default_factory=list)
    events: list[tuple[str, NativeEvent]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    requests: list[DeviceRequest] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        device_request = DeviceRequest(
            method=request.method,
            path=request.path,
            query={k: request.query.getone(k) for k in request.query},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            peer=request.remote or "",
        )
        self.requests.append(device_request)
        adapter = max(
            (a for a in self.adapters if request.path.startswith(a.path_prefixes)),
            key=lambda a: max(len(p) for p in a.path_prefixes if request.path.startswith(p)),
        )
        try:
            parsed = adapter.parse(device_request)
        except MalformedRequest as err:
            return self._refuse(adapter, RefusalReason.MALFORMED, err.reason)
        if not set(parsed.identity.keys()) & self.known:
            return self._refuse(adapter, RefusalReason.UNKNOWN_DEVICE, "unknown")
        if self.unavailable and parsed.events:
            return self._refuse(adapter, RefusalReason.UNAVAILABLE, "unavailable")
        if request.path == "/iclock/getrequest" and self.commands:
            body = "".join(f"{c}\n" for c in self.commands)
            self.commands = []
            return web.Response(body=body.encode(), content_type="text/plain")
        if self.json_answers and parsed.events:
            return web.json_response({"ok": True})
        self.events.extend((adapter.vendor, e) for e in parsed.events)
        response = adapter.answer(parsed, ())
        return web.Response(
            status=response.status, body=response.body, headers=dict(response.headers)
        )

    def _refuse(self, adapter: DeviceAdapter, reason: RefusalReason, note: str) -> web.Response:
        self.refusals.append(note)
        response = adapter.refuse(reason)
        return web.Response(
            status=response.status, body=response.body, headers=dict(response.headers)
        )


async def serving(standin: StandIn, body: Callable[[str], Awaitable[Any]]) -> Any:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", standin.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    try:
        return await body(f"http://{LOOPBACK}:{port}")
    finally:
        await runner.cleanup()


def standin() -> StandIn:
    return StandIn(adapters=(DahuaAdapter(), ZktecoAdapter()), known={DAHUA_SERIAL, ZK_SN})


# -- Dahua ------------------------------------------------------------------------------------


def test_dahua_terminal_uploads_and_the_edge_takes_each_record_once() -> None:
    service = standin()

    async def body(url: str) -> FakeDahuaTerminal:
        terminal = FakeDahuaTerminal(url, DAHUA_SERIAL)
        terminal.swipe(user_id=RESIDENT, temperature_c=36.6)
        terminal.swipe(card_no="A1B2C3D4", method=1, entry=False)
        assert await terminal.upload() == [200, 200]
        return terminal

    terminal = asyncio.run(serving(service, body))
    assert terminal.stored == []
    got = [(e.event_serial, e.method, e.identifier, e.temperature_c) for _, e in service.events]
    assert got == [("rec1", "FACE", RESIDENT, 36.6), ("rec2", "CARD", "A1B2C3D4", None)]
    # the snapshot travelled in the request but no event carries anything of it
    assert all(b"\xff\xd8\xff" in r.body for r in service.requests)


def test_dahua_terminal_keeps_and_resends_what_the_edge_could_not_store() -> None:
    service = standin()

    async def body(url: str) -> tuple[list[int], list[int], FakeDahuaTerminal]:
        terminal = FakeDahuaTerminal(url, DAHUA_SERIAL, line_end="\n", content_type=None)
        terminal.swipe(user_id=RESIDENT, temperature_c=38.4, error_code=96)
        service.unavailable = True
        first = await terminal.upload()
        assert len(terminal.stored) == 1  # kept on the device
        service.unavailable = False
        second = await terminal.upload()
        return first, second, terminal

    first, second, terminal = asyncio.run(serving(service, body))
    assert first == [503]
    assert second == [200]
    assert terminal.stored == []
    assert [(e.event_serial, e.temperature_c) for _, e in service.events] == [("rec1", 38.4)]


def test_dahua_unknown_terminal_is_refused_and_keeps_its_records() -> None:
    service = standin()

    async def body(url: str) -> FakeDahuaTerminal:
        terminal = FakeDahuaTerminal(url, "NOT-REGISTERED")
        terminal.swipe(user_id=RESIDENT)
        assert await terminal.upload() == [403]
        return terminal

    terminal = asyncio.run(serving(service, body))
    assert len(terminal.stored) == 1
    assert service.events == []
    assert service.refusals == ["unknown"]


# -- ZKTeco -----------------------------------------------------------------------------------


def test_zkteco_handshake_upload_and_poll() -> None:
    service = standin()
    service.commands = ["C:7:INFO"]

    async def body(url: str) -> FakeZkTerminal:
        terminal = FakeZkTerminal(url, ZK_SN)
        assert await terminal.handshake()
        terminal.punch(RESIDENT, datetime(2026, 12, 7, 8, 15, 2), verify=15)
        terminal.punch(RESIDENT, datetime(2026, 12, 7, 18, 1, 40), status=1, verify=2)
        assert await terminal.upload()
        assert await terminal.poll() == ["C:7:INFO"]
        assert await terminal.poll() == []
        return terminal

    terminal = asyncio.run(serving(service, body))
    assert terminal.options["Realtime"] == "1"
    assert terminal.options["TimeZone"] == "8"
    assert terminal.options["Delay"] == "10"
    assert terminal.stored == [] and terminal.stamp == 2
    assert terminal.executed == ["7"]
    upload_answer = next(a for a in terminal.answers if a.text.startswith("OK:"))
    assert upload_answer.text.strip() == "OK:2"
    got = [(e.event_serial, e.method, e.direction) for _, e in service.events]
    assert got == [
        ("att-2026-12-07T08:15:02-s0-v15-w0", "FACE", None),
        ("att-2026-12-07T18:01:40-s1-v2-w0", "CARD", "OUT"),
    ]
    # the upload came without a Content-Type, as from the firmware
    attlog = next(r for r in service.requests if r.query.get("table") == "ATTLOG")
    assert "content-type" not in attlog.headers


def test_zkteco_batch_refused_is_sent_again_with_the_same_serials() -> None:
    service = standin()

    async def body(url: str) -> tuple[bool, bool]:
        terminal = FakeZkTerminal(url, ZK_SN, table="rtlog")
        assert await terminal.handshake()
        terminal.punch(RESIDENT, datetime(2026, 12, 7, 8, 20, 11), temperature_c=37.9)
        service.unavailable = True
        refused = await terminal.upload()
        service.unavailable = False
        accepted = await terminal.upload()
        return refused, accepted

    refused, accepted = asyncio.run(serving(service, body))
    assert (refused, accepted) == (False, True)
    assert service.refusals == ["unavailable"]
    assert [(e.event_serial, e.temperature_c) for _, e in service.events] == [("rt1", 37.9)]


def test_control_a_json_answer_makes_the_terminal_resend() -> None:
    """The fake is as strict as the devices: an edge answering JSON would never drain them."""
    service = standin()
    service.json_answers = True

    async def body(url: str) -> FakeZkTerminal:
        terminal = FakeZkTerminal(url, ZK_SN)
        terminal.punch(RESIDENT, datetime(2026, 12, 7, 8, 15, 2))
        assert not await terminal.upload()
        return terminal

    terminal = asyncio.run(serving(service, body))
    assert len(terminal.stored) == 1
    assert json.loads(terminal.answers[-1].text) == {"ok": True}


def test_zkteco_unknown_terminal_gets_plain_text_refusals() -> None:
    service = standin()

    async def body(url: str) -> FakeZkTerminal:
        terminal = FakeZkTerminal(url, "UNKNOWN-SN")
        assert not await terminal.handshake()
        terminal.punch(RESIDENT, datetime(2026, 12, 7, 8, 15, 2))
        assert not await terminal.upload()
        return terminal

    terminal = asyncio.run(serving(service, body))
    assert [a.status for a in terminal.answers] == [403, 403]
    assert all(a.text.startswith("ERROR") for a in terminal.answers)
