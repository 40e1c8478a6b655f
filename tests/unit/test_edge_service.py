"""The edge service on loopback without Kafka: authentication and refusals, the outbox before
the answer, resends, fallback answers inside the device's timeout, the Hikvision callback with
Digest auth, dead letters — and that no raw identifier reaches the outbox or the log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from fangxian.core.settings import Settings
from fangxian.edge.register import DeviceEntry, Register
from fangxian.edge.service import EdgeConfig, EdgeService
from infra.fake_devices import (
    DeviceClient,
    FakeHikvisionTerminal,
    hikvision_event,
    hikvision_push,
    plate_alarm,
    qr_form,
)

C = "91350100M000100Y43"
RAW_ID = "11010519491231002X"
RAW_CARD = "3387654321"
RAW_PLATE = "闽A9K8J7"
PATH_SECRET = "cam-secret-0123456789abcdef"


def _register(terminal_port: int) -> Register:
    common = dict(community_id=C, direction="IN")
    return Register(
        [
            DeviceEntry(
                "hik-1",
                "hikvision",
                gate_id="east",
                mac="aa:bb:cc:dd:ee:01",
                timeout_ms=1500,
                addresses=("127.0.0.1",),
                auth="digest",
                username="edge",
                password="edge-pass",
                callback_url=f"http://127.0.0.1:{terminal_port}",
                callback_username="admin",
                callback_password="terminal-pass",
                **common,
            ),  # type: ignore[arg-type]
            DeviceEntry(
                "cam-1",
                "plate",
                gate_id="car",
                serial="CAM0001",
                timeout_ms=800,
                auth="path",
                password=PATH_SECRET,
                **common,
            ),  # type: ignore[arg-type]
            DeviceEntry(
                "qr-1",
                "qr",
                gate_id="east",
                device_number="R-01",
                timeout_ms=600,
                addresses=("127.0.0.1",),
                **common,
            ),  # type: ignore[arg-type]
            DeviceEntry(
                "api-1",
                "generic",
                gate_id="east",
                serial="api-1",
                auth="basic",
                username="api",
                password="api-pass",
                timeout_ms=600,
                **common,
            ),  # type: ignore[arg-type]
        ]
    )


@dataclasses.dataclass
class Edge:
    service: EdgeService
    client: DeviceClient
    terminal: FakeHikvisionTerminal
    log: list[str]

    def rows(self) -> list[tuple[Any, ...]]:
        return self.service.outbox._db.execute(
            "SELECT event_id, record, value FROM outbox ORDER BY seq"
        ).fetchall()


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


def run(tmp_path: Path, body: Callable[[Edge], Any], **config: Any) -> None:
    async def main() -> None:
        terminal = FakeHikvisionTerminal()
        await terminal.start()
        settings = Settings(pseudonym_key="edge-unit-key")
        cfg = EdgeConfig(
            port=0,
            metrics_port=-1,
            outbox_path=str(tmp_path / "outbox.sqlite"),
            answer_margin_ms=100,
            **config,
        )
        service = EdgeService(settings, cfg, _register(terminal.port), kafka=False)
        lines: list[str] = []
        handler = _Collect(lines)
        root = logging.getLogger()
        root.addHandler(handler)
        old = root.level
        root.setLevel(logging.DEBUG)
        await service.start()
        try:
            async with DeviceClient(f"http://127.0.0.1:{service.port}") as client:
                await body(Edge(service, client, terminal, lines))
        finally:
            await service.stop()
            await terminal.stop()
            root.removeHandler(handler)
            root.setLevel(old)

    asyncio.run(main())


def test_qr_red_code_refused_by_the_fallback_inside_the_timeout(tmp_path: Path) -> None:
    async def body(edge: Edge) -> None:
        red = qr_form(f"FX1R:{'c' * 32}:R", "R-01")
        answer = await edge.client.post("/edge/qr/scan", red, None)
        assert answer.body == b"code=0001"
        assert answer.seconds < 0.6
        green = await edge.client.post("/edge/qr/scan", qr_form(f"FX1R:{'c' * 32}:G", "R-01"), None)
        # the empty replica does not know the resident: unknown subject → refused too
        assert green.body == b"code=0001"
        assert len(edge.rows()) == 2  # both stored before they were answered
        fb = edge.service.metrics.fallback_answers.labels(community_id=C, decision="DENY")
        assert fb._value.get() == 2

    run(tmp_path, body)


def test_unknown_and_unauthenticated_devices_are_refused_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    async def body(edge: Edge) -> None:
        unknown = await edge.client.post("/edge/qr/scan", qr_form("x", "R-99"), None)
        assert unknown.body == b"code=0003"
        plate = plate_alarm(serialno="CAM0001", licence=RAW_PLATE, plate_id=1)
        no_secret = await edge.client.post("/edge/plate/alarm", plate, "application/json")
        wrong = await edge.client.post(f"/d/{'x' * 26}/edge/plate/alarm", plate, None)
        assert no_secret.status == wrong.status == 401
        assert json.loads(wrong.body)["Response_AlarmInfoPlate"]["info"] == "no"
        body_, ctype = hikvision_push(hikvision_event(serial_no=1, employee_no="t"))
        nodigest = await edge.client.post("/edge/hikvision/event", body_, ctype)
        assert nodigest.status == 401
        badpass = await edge.client.post(
            "/edge/hikvision/event", body_, ctype, digest=("edge", "wrong")
        )
        assert badpass.status == 401
        api = await edge.client.post(
            "/edge/api/v1/scans",
            json.dumps({"device_id": "api-1", "event_serial": "1", "method": "CARD"}).encode(),
            "application/json",
            auth=("api", "nope"),
        )
        assert api.status == 401
        assert edge.rows() == []
        requests = edge.service.metrics.requests
        assert requests.labels(vendor="qr", outcome="unknown_device")._value.get() == 1
        # three: no Authorization, then (wrong password) the challenge and the failed answer
        assert requests.labels(vendor="hikvision", outcome="unauthenticated")._value.get() == 3

    run(tmp_path, body)


def test_camera_resending_four_times_is_one_event(tmp_path: Path) -> None:
    async def body(edge: Edge) -> None:
        alarm = plate_alarm(serialno="CAM0001", licence=RAW_PLATE, plate_id=31, truncate=True)
        answers = [
            await edge.client.post(f"/d/{PATH_SECRET}/edge/plate/alarm", alarm, None)
            for _ in range(5)
        ]
        assert {a.status for a in answers} == {200}
        assert len({a.body for a in answers}) == 1
        assert len(edge.rows()) == 1
        # the first waited out the timeout (no core here) and was answered from the fallback;
        # the resends got that same answer at once
        assert all(a.seconds < 0.3 for a in answers[1:]), [a.seconds for a in answers]
        fallback = edge.service.metrics.fallback_answers.labels(community_id=C, decision="DENY")
        assert fallback._value.get() == 1

    run(tmp_path, body)


def test_hikvision_digest_push_and_remote_check_callback(tmp_path: Path) -> None:
    async def body(edge: Edge) -> None:
        event = hikvision_event(
            serial_no=501, employee_no=RAW_ID, temperature_c=38.4, remote_check=True
        )
        push, ctype = hikvision_push(event)
        sent = time.perf_counter()
        answer = await edge.client.post(
            "/edge/hikvision/event", push, ctype, digest=("edge", "edge-pass")
        )
        assert answer.status == 200
        seen = await asyncio.wait_for(edge.terminal.expect(501), 3)
        assert seen.check_result == "failed"  # unknown subject, fever: the fallback refuses
        assert seen.at - sent < 1.5  # the terminal's timeout
        assert edge.terminal.unauthorised >= 1  # it asked for Digest, and got it
        (row,) = edge.rows()
        assert row[1] == "GateScan"

    run(tmp_path, body)


def test_malformed_payload_is_refused_and_dead_lettered_redacted(tmp_path: Path) -> None:
    async def body(edge: Edge) -> None:
        bad = f'{{"AlarmInfoPlate": {{"serialno": "CAM0001", "license": "{RAW_PLATE}"]'.encode()
        answer = await edge.client.post(f"/d/{PATH_SECRET}/edge/plate/alarm", bad, None)
        assert answer.status == 400
        (row,) = edge.rows()
        assert row[1] == "DeadLetter"
        assert RAW_PLATE.encode() not in row[2]

    run(tmp_path, body)


def test_no_raw_identifier_in_the_outbox_or_the_log(tmp_path: Path) -> None:
    async def body(edge: Edge) -> None:
        push, ctype = hikvision_push(hikvision_event(serial_no=9, employee_no=RAW_ID))
        await edge.client.post("/edge/hikvision/e", push, ctype, digest=("edge", "edge-pass"))
        push, ctype = hikvision_push(hikvision_event(serial_no=10, card_no=RAW_CARD))
        await edge.client.post("/edge/hikvision/e", push, ctype, digest=("edge", "edge-pass"))
        await edge.client.post(
            f"/d/{PATH_SECRET}/edge/plate/a",
            plate_alarm(serialno="CAM0001", licence=RAW_PLATE, plate_id=2),
            None,
        )
        await edge.client.post(f"/d/{PATH_SECRET}/edge/plate/a", RAW_ID.encode(), None)
        await edge.client.post("/edge/qr/scan", qr_form(RAW_ID, "R-01"), None)
        await asyncio.sleep(0.2)
        assert len(edge.rows()) == 5
        await asyncio.to_thread(edge.service.outbox._db.execute, "PRAGMA wal_checkpoint")
        files = b"".join(p.read_bytes() for p in Path(edge.service.outbox.path).parent.iterdir())
        logs = "\n".join(edge.log)
        assert "fallback" in logs  # the log does speak about these events
        for raw in (RAW_ID, RAW_CARD, RAW_PLATE, RAW_PLATE[1:]):
            assert raw.encode() not in files, raw
            assert raw not in logs, raw

    run(tmp_path, body)


def test_rate_limit_per_device_and_openapi(tmp_path: Path) -> None:
    async def body(edge: Edge) -> None:
        codes = [
            (await edge.client.post("/edge/qr/scan", qr_form("FX1V:1", "R-01"), None)).body
            for _ in range(4)
        ]
        assert codes.count(b"code=0005") == 2  # burst 2, then refused until tokens refill
        url = f"http://127.0.0.1:{edge.service.port}/openapi.json"
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            doc = await r.json()
        assert "/edge/api/v1/scans" in doc["paths"]

    run(tmp_path, body, rate_per_s=0.01, rate_burst=2)
