"""Local stand-ins for the WeCom, DingTalk and Feishu group robots, a generic webhook receiver
and an Aliyun-shaped ``SendSms``, implementing each API's contract on loopback: they verify the
signature with the documented algorithm, answer the services' error codes (with HTTP 200, or
400 where the service does), apply the rate limit, and on request return 5xx or hang (a
timeout). Tests and the ``make run`` demo send to them instead of the real services.

The codes and messages are the services' own, as their docs and answers seen from the live
services give them (sources in docs/dispatch.md, "Vendor answer codes").

Routes (one aiohttp server):
- ``POST /cgi-bin/webhook/send?key=K`` — WeCom (93000 unknown key, 45009 over 20/min,
  40058 content over 2048 bytes, 40008 not a text message);
- ``POST /robot/send?access_token=T&timestamp=ms&sign=S`` — DingTalk (300001 unknown token,
  310000 bad signature or timestamp older than an hour, 460101 a body over 20,000 bytes,
  130101 over 20/min then blocked);
- ``POST /open-apis/bot/v2/hook/{token}`` — Feishu (19001 unknown hook, 19021 bad signature,
  HTTP 400 with 9499 "Bad Request" for a body over 20 KB and 9499 "too many request" over
  5/s or 100/min; ``inject("feishu", "flow_control")`` answers the documented 11232);
- ``POST /hooks/{name}`` — generic webhook (401 bad signature; duplicates by Idempotency-Key
  are counted, not stored twice);
- ``POST /sms`` — SendSms (``SignatureDoesNotMatch``, ``isv.BUSINESS_LIMIT_CONTROL``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from aiohttp import web

from infra.ports import free_port

log = logging.getLogger(__name__)

FEISHU_BAD_REQUEST: dict[str, Any] = {"code": 9499, "msg": "Bad Request", "data": {}}
FEISHU_TOO_MANY: dict[str, Any] = {"code": 9499, "msg": "too many request", "data": {}}
FEISHU_FLOW_CONTROL: dict[str, Any] = {"code": 11232, "msg": "frequency limited", "data": {}}


@dataclass
class Received:
    kind: str
    target: str
    payload: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.time()


@dataclass
class FakeBotConfig:
    wecom_keys: set[str] = field(default_factory=lambda: {"wecom-key"})
    dingtalk_tokens: dict[str, str] = field(default_factory=lambda: {"ding-token": "ding-secret"})
    feishu_hooks: dict[str, str] = field(default_factory=lambda: {"feishu-hook": "feishu-secret"})
    webhook_secrets: dict[str, str] = field(default_factory=lambda: {"console": "hook-secret"})
    sms_keys: dict[str, str] = field(default_factory=lambda: {"sms-key-id": "sms-key-secret"})
    per_minute: int = 20  # WeCom and DingTalk
    feishu_per_second: int = 5
    feishu_per_minute: int = 100
    dingtalk_block_s: float = 600.0
    hang_s: float = 30.0


def _window_ok(times: deque[float], limit: int, window_s: float, now: float) -> bool:
    while times and now - times[0] >= window_s:
        times.popleft()
    if len(times) >= limit:
        return False
    times.append(now)
    return True


def _aliyun_encode(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="~")


class FakeBots:
    def __init__(self, config: FakeBotConfig | None = None, port: int | None = None) -> None:
        self.config = config or FakeBotConfig()
        self.port = port or free_port()
        self.received: list[Received] = []
        self.rejected: list[tuple[str, str]] = []  # (kind, reason)
        self.faults: dict[str, deque[str]] = {}
        self.on_request: Callable[[Received], None] | None = None
        self.duplicate_keys = 0
        self._seen_keys: set[str] = set()
        self._windows: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- urls a channel config uses
    def wecom_url(self, key: str = "wecom-key") -> str:
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    def dingtalk_url(self, token: str = "ding-token") -> str:
        return f"{self.base_url}/robot/send?access_token={token}"

    def feishu_url(self, hook: str = "feishu-hook") -> str:
        return f"{self.base_url}/open-apis/bot/v2/hook/{hook}"

    def webhook_url(self, name: str = "console") -> str:
        return f"{self.base_url}/hooks/{name}"

    def sms_url(self) -> str:
        return f"{self.base_url}/sms"

    def inject(self, kind: str, *faults: str) -> None:
        """The next requests of ``kind`` fail with these, in order: ``"5xx"``, ``"timeout"``,
        and for Feishu ``"flow_control"`` (code 11232)."""
        self.faults.setdefault(kind, deque()).extend(faults)

    def of_kind(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    # -- lifecycle
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self._feishu)
        app.router.add_post("/hooks/{name}", self._webhook)
        app.router.add_post("/sms", self._sms)
        return app

    async def start(self) -> FakeBots:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- helpers
    async def _fault(self, kind: str) -> web.Response | None:
        queue = self.faults.get(kind)
        if not queue:
            return None
        fault = queue.popleft()
        if fault == "timeout":
            await asyncio.sleep(self.config.hang_s)
        if fault == "flow_control":  # the message text is ours; the code is the documented one
            return self._reject(kind, "flow_control", FEISHU_FLOW_CONTROL)
        return web.json_response({"error": "injected"}, status=503)

    def _reject(
        self, kind: str, reason: str, body: dict[str, Any], status: int = 200
    ) -> web.Response:
        self.rejected.append((kind, reason))
        return web.json_response(body, status=status)

    def _accept(
        self, kind: str, target: str, payload: dict[str, Any], request: web.Request
    ) -> None:
        item = Received(kind, target, payload, dict(request.headers), time.time())
        if self.on_request is not None:
            self.on_request(item)
        self.received.append(item)

    def _rate(self, key: str, limit: int, window_s: float) -> bool:
        return _window_ok(self._windows.setdefault(key, deque()), limit, window_s, time.monotonic())

    # -- WeCom
    async def _wecom(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("wecom")) is not None:
            return fault
        key = request.query.get("key", "")
        if key not in self.config.wecom_keys:
            return self._reject("wecom", "key", {"errcode": 93000, "errmsg": "invalid webhook url"})
        payload = await request.json()
        if payload.get("msgtype") != "text" or "content" not in payload.get("text", {}):
            return self._reject(
                "wecom", "body", {"errcode": 40008, "errmsg": "invalid message type"}
            )
        if len(payload["text"]["content"].encode()) > 2048:
            return self._reject(
                "wecom",
                "size",
                {
                    "errcode": 40058,
                    "errmsg": "text.content exceed max length 2048. invalid Request Parameter",
                },
            )
        if not self._rate(f"wecom:{key}", self.config.per_minute, 60.0):
            return self._reject(
                "wecom", "rate", {"errcode": 45009, "errmsg": "api freq out of limit"}
            )
        self._accept("wecom", key, payload, request)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # -- DingTalk
    async def _dingtalk(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("dingtalk")) is not None:
            return fault
        token = request.query.get("access_token", "")
        secret = self.config.dingtalk_tokens.get(token)
        if secret is None:
            return self._reject(
                "dingtalk", "token", {"errcode": 300001, "errmsg": "token is not exist"}
            )
        raw_query = request.rel_url.raw_query_string
        params = dict(p.split("=", 1) for p in raw_query.split("&") if "=" in p)
        ts = params.get("timestamp", "0")
        expected = quote_plus(
            base64.b64encode(
                hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
            ).decode()
        )
        if not hmac.compare_digest(unquote_plus(params.get("sign", "")), unquote_plus(expected)):
            return self._reject("dingtalk", "sign", {"errcode": 310000, "errmsg": "sign not match"})
        if abs(time.time() * 1000 - int(ts)) > 3600_000:
            return self._reject(
                "dingtalk", "timestamp", {"errcode": 310000, "errmsg": "invalid timestamp"}
            )
        now = time.monotonic()
        if self._blocked_until.get(token, 0) > now or not self._rate(
            f"ding:{token}", self.config.per_minute, 60.0
        ):
            self._blocked_until.setdefault(token, now + self.config.dingtalk_block_s)
            return self._reject(
                "dingtalk",
                "rate",
                {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"},
            )
        raw = await request.read()
        if len(raw) > 20_000:
            return self._reject(
                "dingtalk",
                "size",
                {
                    "errcode": 460101,
                    "errmsg": "description: body 大小不合法;solution:请保持大小在 20000bytes 以内;",
                },
            )
        payload = json.loads(raw)
        self._accept("dingtalk", token, payload, request)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # -- Feishu
    async def _feishu(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("feishu")) is not None:
            return fault
        token = request.match_info["token"]
        secret = self.config.feishu_hooks.get(token)
        if secret is None:
            return self._reject(
                "feishu",
                "hook",
                {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"},
            )
        raw = await request.read()
        if len(raw) > 20 * 1024:
            return self._reject("feishu", "size", FEISHU_BAD_REQUEST, status=400)
        payload = json.loads(raw)
        ts = str(payload.get("timestamp", ""))
        expected = base64.b64encode(
            hmac.new(f"{ts}\n{secret}".encode(), b"", hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(str(payload.get("sign", "")), expected):
            return self._reject(
                "feishu",
                "sign",
                {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                },
            )
        if not ts.isdigit() or abs(time.time() - int(ts)) > 3600:
            return self._reject(
                "feishu",
                "timestamp",
                {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                },
            )
        per_second = self._rate(f"feishu:{token}", self.config.feishu_per_second, 1.0)
        if not per_second or not self._rate(
            f"feishu-min:{token}", self.config.feishu_per_minute, 60.0
        ):
            # as the live service answers a burst: HTTP 400, code 9499, "too many request"
            return self._reject("feishu", "rate", FEISHU_TOO_MANY, status=400)
        self._accept("feishu", token, payload, request)
        return web.json_response({"code": 0, "data": {}, "msg": "success"})

    # -- generic webhook
    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("webhook")) is not None:
            return fault
        name = request.match_info["name"]
        secret = self.config.webhook_secrets.get(name)
        body = await request.read()
        ts = request.headers.get("X-Fangxian-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(
                (secret or "").encode(), f"{ts}.".encode() + body, hashlib.sha256
            ).hexdigest()
        )
        if secret is None or not hmac.compare_digest(
            request.headers.get("X-Fangxian-Signature", ""), expected
        ):
            self.rejected.append(("webhook", "sign"))
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        if key and key in self._seen_keys:
            self.duplicate_keys += 1
            return web.json_response({"ok": True, "duplicate": True})
        self._seen_keys.add(key)
        self._accept("webhook", name, json.loads(body), request)
        return web.json_response({"ok": True})

    # -- SMS
    async def _sms(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("sms")) is not None:
            return fault
        form = dict(await request.post())
        params = {k: str(v) for k, v in form.items()}
        given = params.pop("Signature", "")
        secret = self.config.sms_keys.get(params.get("AccessKeyId", ""))
        canonical = "&".join(
            f"{_aliyun_encode(k)}={_aliyun_encode(v)}" for k, v in sorted(params.items())
        )
        to_sign = f"POST&%2F&{_aliyun_encode(canonical)}"
        expected = base64.b64encode(
            hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        if secret is None or not hmac.compare_digest(given, expected):
            return self._reject(
                "sms",
                "sign",
                {
                    "Code": "SignatureDoesNotMatch",
                    "Message": "Specified signature is not matched with our calculation.",
                },
            )
        if params.get("Action") != "SendSms" or not params.get("TemplateCode"):
            return self._reject(
                "sms", "body", {"Code": "isv.INVALID_PARAMETERS", "Message": "invalid parameters"}
            )
        if not self._rate(f"sms:{params.get('PhoneNumbers')}", self.config.per_minute, 60.0):
            return self._reject(
                "sms",
                "rate",
                {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"},
            )
        self._accept("sms", params.get("PhoneNumbers", ""), params, request)
        return web.json_response(
            {"Code": "OK", "Message": "OK", "BizId": f"biz{len(self.received)}", "RequestId": "req"}
        )


def main() -> None:  # pragma: no cover - a manual/demo helper
    parser = argparse.ArgumentParser(description="local fake group robots for fangxian")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    async def serve() -> None:
        bots = await FakeBots(port=args.port or None).start()
        print(json.dumps({"base_url": bots.base_url}), flush=True)
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
