"""The group robots community staff use. Their answers carry the outcome in the body
(``errcode`` / ``code``; 0 is success), with HTTP 200 for most refusals and HTTP 400 for some
(Feishu answers a burst with HTTP 400 and code 9499), so the body is read whatever the status;
``wecom_refusal``, ``dingtalk_refusal`` and ``feishu_refusal`` turn (status, body) into a
``DeliveryError`` or ``None``, pure and tested as a table (``tests/unit/test_channel_answers.py``).
The codes below were checked against the vendors' docs and answers seen from the live services
(sources in docs/dispatch.md, "Vendor answer codes").

- WeCom (企业微信群机器人): ``POST <url>?key=K``, ``{"msgtype": "text", "text": {"content",
  "mentioned_list", "mentioned_mobile_list"}}``; content at most 2048 bytes (over it: errcode
  40058 "… exceed max length …. invalid Request Parameter"); 20 messages/min per robot (45009
  "api freq out of limit"); 93000 "invalid webhook url" (wrong key, or the robot was removed
  from the group); -1 system busy.
- DingTalk (钉钉自定义机器人): ``POST <url>?access_token=T&timestamp=ms&sign=S``,
  S = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{ms}\\n{secret}"))); ``at.atMobiles`` and
  ``@mobile`` inside the text; 20 messages/min, then the robot is blocked for 10 minutes
  (errcode 130101 "send too fast"); 310000 a failed signature / keyword / IP check; 300001 and
  300005 "token is not exist"; 460101 a body over 20,000 bytes.
- Feishu (飞书自定义机器人): ``POST <url>`` with ``timestamp`` (s) and ``sign`` =
  base64(HMAC-SHA256(key=f"{s}\\n{secret}", msg=b"")) in the body, ``<at user_id="ou_…">``;
  100 messages/min and 5/s per robot, request body at most 20 KB; 19021 a bad signature or
  timestamp, 19001 an unknown hook, 19022 / 19024 the IP / keyword checks; 11232 the
  documented flow-control (rate-limit) code; 9499 is "Bad Request" (a malformed or oversized
  body) — and also what a burst is answered with, as ``{"code": 9499, "msg": "too many
  request"}`` with HTTP 400: only that 9499 is worth retrying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote_plus

import aiohttp

from sinks.channels.base import Channel, DeliveryError, OutgoingMessage

WECOM_MAX_BYTES = 2048  # the text's content
#: DingTalk (20,000 bytes) and Feishu (20 KB) limit the whole request body: the text gets what
#: the JSON around it (mentions, signature) leaves, and the body is sent as UTF-8, not with
#: \\u escapes (which would make a Chinese text twice as long on the wire)
DINGTALK_BODY_MAX = 20_000
FEISHU_BODY_MAX = 20 * 1024
BODY_ROOM = 1_000
DINGTALK_MAX_BYTES = DINGTALK_BODY_MAX - BODY_ROOM
FEISHU_MAX_BYTES = FEISHU_BODY_MAX - BODY_ROOM

#: 45009 "api freq out of limit" (the robot's 20/min); 45033 concurrent calls over the limit
WECOM_RATE_LIMITED = frozenset({45009, 45033})
WECOM_BLOCK_S = 60.0
#: the services' "system busy, try again" (WeCom and DingTalk global codes)
SYSTEM_BUSY = -1
DINGTALK_RATE_LIMITED = 130101
DINGTALK_BLOCK_S = 600.0
FEISHU_BAD_SIGNATURE = 19021
FEISHU_FLOW_CONTROL = 11232
#: "Bad Request" — and, with the message "too many request", a burst over 5/s
FEISHU_BAD_REQUEST = 9499
FEISHU_BLOCK_S = 1.0


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature as it goes in the URL (already URL-encoded)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return quote_plus(base64.b64encode(mac.digest()).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature: the string ``"{timestamp}\\n{secret}"`` is the HMAC key."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _code(data: Mapping[str, Any] | None, *names: str) -> int | None:
    """The answer's code, or None when the body has none (not JSON, or no such field)."""
    if data is None:
        return None
    for name in names:
        if name in data:
            try:
                return int(data[name])
            except (TypeError, ValueError):
                return None
    return None


def _without_code(vendor: str, status: int) -> DeliveryError:
    """An answer without the vendor's code: judged by its HTTP status (a 2xx without a code is
    not the documented success answer, and a proxy's error page may be anything)."""
    if status >= 500 or status == 429 or 200 <= status < 300:
        return DeliveryError(
            f"{vendor}: HTTP {status} without a code",
            retryable=True,
            code=str(status) if status >= 300 else "bad_body",
        )
    return DeliveryError(f"{vendor}: HTTP {status}", retryable=False, code=str(status))


def wecom_refusal(status: int, data: Mapping[str, Any] | None) -> DeliveryError | None:
    """What a WeCom robot's answer means: None for success, else the failure to record."""
    code = _code(data, "errcode")
    if code is None or data is None:
        return _without_code("WeCom", status)
    if code == 0:
        return None
    limited = code in WECOM_RATE_LIMITED
    return DeliveryError(
        f"WeCom errcode {code}: {data.get('errmsg', '')}",
        retryable=limited or code == SYSTEM_BUSY,
        code=str(code),
        block_s=WECOM_BLOCK_S if limited else 0.0,
    )


def dingtalk_refusal(status: int, data: Mapping[str, Any] | None) -> DeliveryError | None:
    """What a DingTalk robot's answer means: None for success, else the failure to record."""
    code = _code(data, "errcode")
    if code is None or data is None:
        return _without_code("DingTalk", status)
    if code == 0:
        return None
    return DeliveryError(
        f"DingTalk errcode {code}: {data.get('errmsg', '')}",
        retryable=code in (DINGTALK_RATE_LIMITED, SYSTEM_BUSY),
        code=str(code),
        block_s=DINGTALK_BLOCK_S if code == DINGTALK_RATE_LIMITED else 0.0,
    )


def feishu_refusal(status: int, data: Mapping[str, Any] | None) -> DeliveryError | None:
    """What a Feishu robot's answer means: None for success, else the failure to record.
    9499 is retried only when its message says it was a burst ("too many request")."""
    code = _code(data, "code", "StatusCode")
    if code is None or data is None:
        return _without_code("Feishu", status)
    if code == 0:
        return None
    text = str(data.get("msg", data.get("StatusMessage", "")))
    burst = code == FEISHU_BAD_REQUEST and "too many request" in text.lower()
    limited = burst or code == FEISHU_FLOW_CONTROL
    return DeliveryError(
        f"Feishu code {code}: {text}",
        retryable=limited,
        code=str(code),
        block_s=FEISHU_BLOCK_S if limited else 0.0,
    )


def json_body(payload: Mapping[str, Any]) -> bytes:
    """A payload as the UTF-8 JSON body sent (non-ASCII characters as they are)."""
    return json.dumps(payload, ensure_ascii=False).encode()


JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


async def read_answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any] | None]:
    """The HTTP status and the JSON object of a robot's answer (None when the body is not a
    JSON object), read whatever the status."""
    try:
        data = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientPayloadError):
        data = None
    return response.status, data if isinstance(data, dict) else None


class WeComBot(Channel):
    kind: ClassVar[str] = "wecom"
    rate_count: int = 20

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name)
        self._url = url

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        userids = [m.wecom_userid for m in message.mentions if m.wecom_userid]
        mobiles = [
            m.wecom_mobile for m in message.mentions if m.wecom_mobile and not m.wecom_userid
        ]
        return {
            "msgtype": "text",
            "text": {
                "content": message.fitted_text(WECOM_MAX_BYTES),
                "mentioned_list": userids,
                "mentioned_mobile_list": mobiles,
            },
        }

    async def send(self, session: aiohttp.ClientSession, message: OutgoingMessage) -> None:
        async with session.post(self._url, json=self.payload(message)) as response:
            refusal = wecom_refusal(*await read_answer(response))
        if refusal is not None:
            raise refusal


class DingTalkBot(Channel):
    kind: ClassVar[str] = "dingtalk"
    rate_count: int = 20

    def __init__(
        self, name: str, url: str, secret: str, clock_ms: Callable[[], int] | None = None
    ) -> None:
        super().__init__(name)
        self._url = url
        self._secret = secret
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        mobiles = [m.dingtalk_mobile for m in message.mentions if m.dingtalk_mobile]
        # the @mobile must be in the text for DingTalk to highlight the mention
        at_line = " ".join(f"@{mobile}" for mobile in mobiles)
        suffix = f"\n{at_line}" if at_line else ""
        return {
            "msgtype": "text",
            "text": {"content": message.fitted_text(DINGTALK_MAX_BYTES, suffix=suffix)},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }

    def signed_url(self) -> str:
        ts = self._clock_ms()
        joiner = "&" if "?" in self._url else "?"
        if not self._secret:
            return self._url
        return f"{self._url}{joiner}timestamp={ts}&sign={dingtalk_sign(self._secret, ts)}"

    async def send(self, session: aiohttp.ClientSession, message: OutgoingMessage) -> None:
        # yarl would re-quote the already URL-encoded signature: pass the URL as it is
        from yarl import URL

        async with session.post(
            URL(self.signed_url(), encoded=True),
            data=json_body(self.payload(message)),
            headers=JSON_HEADERS,
        ) as response:
            refusal = dingtalk_refusal(*await read_answer(response))
        if refusal is not None:
            raise refusal


class FeishuBot(Channel):
    kind: ClassVar[str] = "feishu"
    rate_count: int = 5
    rate_window_s: float = 1.0  # 5/s is the tighter of 5/s and 100/min

    def __init__(
        self, name: str, url: str, secret: str, clock_s: Callable[[], int] | None = None
    ) -> None:
        super().__init__(name)
        self._url = url
        self._secret = secret
        self._clock_s = clock_s or (lambda: int(time.time()))

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        ats = [
            f'<at user_id="{m.feishu_open_id}">{m.display_name}</at>'
            for m in message.mentions
            if m.feishu_open_id
        ]
        prefix = (" ".join(ats) + "\n") if ats else ""
        body: dict[str, Any] = {
            "msg_type": "text",
            "content": {"text": message.fitted_text(FEISHU_MAX_BYTES, prefix=prefix)},
        }
        if self._secret:
            ts = self._clock_s()
            body = {"timestamp": str(ts), "sign": feishu_sign(self._secret, ts), **body}
        return body

    async def send(self, session: aiohttp.ClientSession, message: OutgoingMessage) -> None:
        async with session.post(
            self._url, data=json_body(self.payload(message)), headers=JSON_HEADERS
        ) as response:
            refusal = feishu_refusal(*await read_answer(response))
        if refusal is not None:
            raise refusal
