"""The group robots community staff use. All three answer HTTP 200 with a non-zero
``errcode``/``code`` on failure, so the body is always checked.

- WeCom (企业微信群机器人): ``POST <url>?key=K``, ``{"msgtype": "text", "text": {"content",
  "mentioned_list", "mentioned_mobile_list"}}``; content at most 2048 bytes; 20 messages/min per
  robot (errcode 45009 when exceeded); 93000 is an invalid key.
- DingTalk (钉钉自定义机器人): ``POST <url>?access_token=T&timestamp=ms&sign=S``,
  S = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{ms}\\n{secret}"))); ``at.atMobiles`` and
  ``@mobile`` inside the text; 20 messages/min, then the robot is blocked for 10 minutes
  (errcode 130101); 310000 is a failed signature / keyword / IP check.
- Feishu (飞书自定义机器人): ``POST <url>`` with ``timestamp`` (s) and ``sign`` =
  base64(HMAC-SHA256(key=f"{s}\\n{secret}", msg=b"")) in the body, ``<at user_id="ou_…">``;
  100 messages/min and 5/s; code 19021 is a bad signature, 9499 or HTTP 429 a rate limit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote_plus

import aiohttp

from sinks.channels.base import Channel, DeliveryError, OutgoingMessage, read_json

WECOM_MAX_BYTES = 2048
DINGTALK_MAX_BYTES = 20000
FEISHU_MAX_BYTES = 20000  # the whole request body may not exceed 20 KB; leave room for JSON

WECOM_RATE_LIMITED = 45009
DINGTALK_RATE_LIMITED = 130101
DINGTALK_BLOCK_S = 600.0
FEISHU_BAD_SIGNATURE = 19021
FEISHU_RATE_LIMITED = frozenset({9499, 11232})


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature as it goes in the URL (already URL-encoded)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return quote_plus(base64.b64encode(mac.digest()).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature: the string ``"{timestamp}\\n{secret}"`` is the HMAC key."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _errcode(data: dict[str, Any], *names: str) -> int:
    for name in names:
        if name in data:
            try:
                return int(data[name])
            except (TypeError, ValueError):
                return -1
    return -1  # no code at all: not the documented success answer


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
            data = await read_json(response)
        code = _errcode(data, "errcode")
        if code == 0:
            return
        raise DeliveryError(
            f"WeCom errcode {code}: {data.get('errmsg', '')}",
            retryable=code in (WECOM_RATE_LIMITED, -1),
            code=str(code),
            block_s=60.0 if code == WECOM_RATE_LIMITED else 0.0,
        )


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
            URL(self.signed_url(), encoded=True), json=self.payload(message)
        ) as response:
            data = await read_json(response)
        code = _errcode(data, "errcode")
        if code == 0:
            return
        raise DeliveryError(
            f"DingTalk errcode {code}: {data.get('errmsg', '')}",
            retryable=code in (DINGTALK_RATE_LIMITED, -1),
            code=str(code),
            block_s=DINGTALK_BLOCK_S if code == DINGTALK_RATE_LIMITED else 0.0,
        )


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
        async with session.post(self._url, json=self.payload(message)) as response:
            data = await read_json(response)
        code = _errcode(data, "code", "StatusCode")
        if code == 0:
            return
        raise DeliveryError(
            f"Feishu code {code}: {data.get('msg', data.get('StatusMessage', ''))}",
            retryable=code in FEISHU_RATE_LIMITED or code == -1,
            code=str(code),
            block_s=1.0 if code in FEISHU_RATE_LIMITED else 0.0,
        )
