"""Fake gate devices: each speaks its family's native protocol to the edge, as the field does.

- :func:`hikvision_push` builds a terminal's ISAPI push (multipart/form-data, the
  ``AccessControllerEvent`` JSON part and a JPEG part); :class:`FakeHikvisionTerminal` also
  serves ``PUT /ISAPI/AccessControl/remoteCheck`` behind HTTP Digest auth and records what the
  platform answered, as a terminal with remote verification waits for it.
- :func:`plate_alarm` builds a Zhenshi/VZ-style ``AlarmInfoPlate`` (optionally cut short the way
  some firmware sends it); :func:`qr_form` a QR reader's ``vgdecoderesult=…&&devicenumber=…``.
- :class:`DeviceClient` posts those over HTTP and times the answer as the device sees it.

Used by the tests, the demo and the bench. Nothing here is imported by the edge itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

#: a tiny JPEG stand-in (SOI … EOI): the edge must drop it unread
FAKE_JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


def hikvision_event(
    *,
    serial_no: int,
    employee_no: str | None = None,
    card_no: str | None = None,
    temperature_c: float | None = None,
    remote_check: bool = False,
    mac: str = "aa:bb:cc:dd:ee:01",
    ip: str = "127.0.0.1",
    date_time: str = "2026-12-07T08:00:00+08:00",
    qr: str | None = None,
) -> dict[str, Any]:
    ace: dict[str, Any] = {
        "deviceName": "gate terminal",
        "majorEventType": 5,
        "subEventType": 75,
        "cardReaderNo": 1,
        "doorNo": 1,
        "serialNo": serial_no,
        "currentVerifyMode": "cardOrFace",
        "mask": "no",
        "userType": "normal",
        "name": "张三",
    }
    if employee_no is not None:
        ace["employeeNoString"] = employee_no
    if card_no is not None:
        ace["cardNo"] = card_no
    if qr is not None:
        ace["QRCodeInfo"] = qr
    if temperature_c is not None:
        ace.update(
            currTemperature=temperature_c,
            isAbnomalTemperature=temperature_c >= 37.3,
            thermometryUnit="celsius",
        )
    if remote_check:
        ace["remoteCheck"] = True
    return {
        "ipAddress": ip,
        "portNo": 80,
        "protocol": "HTTP",
        "macAddress": mac,
        "channelID": 1,
        "dateTime": date_time,
        "activePostCount": 1,
        "eventType": "AccessControllerEvent",
        "eventState": "active",
        "eventDescription": "Access Controller Event",
        "AccessControllerEvent": ace,
    }


def hikvision_push(
    event: dict[str, Any], *, with_image: bool = True, boundary: str = "MIME_boundary"
) -> tuple[bytes, str]:
    """(body, Content-Type) of a terminal's multipart push."""
    parts = [
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="AccessControllerEvent"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        + json.dumps(event, ensure_ascii=False, indent="\t").encode()
        + b"\r\n"
    ]
    if with_image:
        parts.append(
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="Picture"; filename="Picture.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + FAKE_JPEG
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def plate_alarm(
    *,
    serialno: str,
    licence: str,
    plate_id: int,
    sec: int = 1_796_601_600,
    offline: bool = False,
    truncate: bool = False,
) -> bytes:
    body = {
        "AlarmInfoPlate": {
            "channel": 0,
            "deviceName": "IVS",
            "ipaddr": "127.0.0.1",
            "serialno": serialno,
            "result": {
                "PlateResult": {
                    "license": licence,
                    "colorType": 1,
                    "confidence": 98,
                    "plateid": plate_id,
                    "triggerType": 8,
                    "isoffline": 1 if offline else 0,
                    "timeStamp": {"Timeval": {"sec": sec, "usec": 120000}},
                }
            },
        }
    }
    text = json.dumps(body, ensure_ascii=False).encode()
    # like the field: cut after the last value, before the closing braces
    return text[: text.rindex(b"}}}}")] if truncate else text


def qr_form(code: str, device_number: str) -> bytes:
    return f"vgdecoderesult={code}&&devicenumber={device_number}&&otherparams=".encode()


@dataclass
class Timed:
    status: int
    body: bytes
    seconds: float


class DeviceClient:
    """One HTTP client as a device is one: posts its native payload, times the answer."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DeviceClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(
        self,
        path: str,
        body: bytes,
        content_type: str | None,
        *,
        auth: tuple[str, str] | None = None,
        digest: tuple[str, str] | None = None,
    ) -> Timed:
        assert self._session is not None
        headers = {"Content-Type": content_type} if content_type else {}
        url = self.base_url + path
        started = time.perf_counter()
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        async with self._session.post(url, data=body, headers=headers) as resp:
            data = await resp.read()
            status = resp.status
            challenge = resp.headers.get("WWW-Authenticate", "")
        if status == 401 and digest is not None and challenge.lower().startswith("digest"):
            headers["Authorization"] = digest_authorization(
                challenge, "POST", path, digest[0], digest[1]
            )
            async with self._session.post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                status = resp.status
        return Timed(status, data, time.perf_counter() - started)


def _parse_challenge(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in header.split(" ", 1)[1].split(","):
        name, _, value = item.strip().partition("=")
        out[name.strip().lower()] = value.strip().strip('"')
    return out


def digest_authorization(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """An RFC 7616 MD5 ``Authorization`` header answering ``challenge`` (qop=auth)."""
    params = _parse_challenge(challenge)
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    cnonce, nc = secrets.token_hex(8), "00000001"
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}", algorithm=MD5'
    )


@dataclass
class RemoteCheckSeen:
    serial_no: Any
    check_result: str
    info: str
    at: float


@dataclass
class FakeHikvisionTerminal:
    """The terminal's own ISAPI server: accepts ``PUT /ISAPI/AccessControl/remoteCheck`` only
    with a valid Digest ``Authorization`` (401 + challenge first, as the firmware does)."""

    user: str = "admin"
    password: str = "terminal-pass"
    realm: str = "DS-K1T671"
    seen: list[RemoteCheckSeen] = field(default_factory=list)
    unauthorised: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None
    _waiters: dict[str, asyncio.Future[RemoteCheckSeen]] = field(default_factory=dict)

    def _challenge(self) -> web.Response:
        self.unauthorised += 1
        nonce = secrets.token_hex(16)
        header = f'Digest realm="{self.realm}", qop="auth", nonce="{nonce}", algorithm=MD5'
        return web.Response(status=401, headers={"WWW-Authenticate": header})

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("digest "):
            return False
        p = _parse_challenge(header)
        if p.get("username") != self.user:
            return False
        ha1 = hashlib.md5(f"{self.user}:{self.realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{request.method}:{p.get('uri', '')}".encode()).hexdigest()
        expected = hashlib.md5(
            f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}".encode()
        ).hexdigest()
        return secrets.compare_digest(expected, p.get("response", ""))

    async def _remote_check(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._challenge()
        body = await request.json()
        check = body["RemoteCheck"]
        seen = RemoteCheckSeen(
            check["serialNo"], check["checkResult"], check.get("info", ""), time.perf_counter()
        )
        self.seen.append(seen)
        waiter = self._waiters.pop(str(check["serialNo"]), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(seen)
        return web.json_response({"statusCode": 1, "statusString": "OK"})

    def expect(self, serial_no: int) -> asyncio.Future[RemoteCheckSeen]:
        future: asyncio.Future[RemoteCheckSeen] = asyncio.get_running_loop().create_future()
        for seen in self.seen:
            if str(seen.serial_no) == str(serial_no):
                future.set_result(seen)
                return future
        self._waiters[str(serial_no)] = future
        return future

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application()
        app.router.add_put("/ISAPI/AccessControl/remoteCheck", self._remote_check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
