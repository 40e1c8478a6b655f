"""SMS behind a provider interface, with an Aliyun-shaped ``SendSms`` provider.

An SMS goes to one phone with an approved template (``TemplateCode``) and signature name
(``SignName``); the alert is a template parameter. SMS is not idempotent: a ``SendSms`` that
reached the provider before the dispatcher died is sent again after the restart (the one
window documented in docs/dispatch.md).

Aliyun RPC signature (version 1.0): the request parameters sorted by name, each name and value
percent-encoded (RFC 3986; space ``%20``, ``*`` ``%2A``, ``~`` kept), joined with ``&``; the
string to sign is ``POST&%2F&`` + percent-encode(that); ``Signature`` =
base64(HMAC-SHA1(access_key_secret + "&", string to sign)). The answer is JSON with
``Code`` ``"OK"`` on success; ``isv.BUSINESS_LIMIT_CONTROL`` is the rate limit.
"""

from __future__ import annotations

import abc
import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote

import aiohttp

from sinks.channels.base import Channel, DeliveryError, OutgoingMessage, read_json

RATE_LIMIT_CODE = "isv.BUSINESS_LIMIT_CONTROL"


def percent_encode(text: str) -> str:
    return quote(text, safe="~")


def aliyun_signature(secret: str, params: Mapping[str, str], method: str = "POST") -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
    )
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    mac = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class SmsProvider(abc.ABC):
    @abc.abstractmethod
    async def send_sms(
        self, session: aiohttp.ClientSession, phone: str, params: Mapping[str, str]
    ) -> str:
        """Send one templated SMS; return the provider's id; raise ``DeliveryError``."""


class AliyunSms(SmsProvider):
    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
    ) -> None:
        self._endpoint = endpoint
        self._key_id = access_key_id
        self._secret = access_key_secret
        self._sign_name = sign_name
        self._template = template_code

    def __repr__(self) -> str:
        return f"AliyunSms(template={self._template!r})"

    def request(self, phone: str, params: Mapping[str, str]) -> dict[str, str]:
        query = {
            "AccessKeyId": self._key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": phone,
            "SignName": self._sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "TemplateCode": self._template,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False),
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        query["Signature"] = aliyun_signature(self._secret, query)
        return query

    async def send_sms(
        self, session: aiohttp.ClientSession, phone: str, params: Mapping[str, str]
    ) -> str:
        async with session.post(self._endpoint, data=self.request(phone, params)) as response:
            data = await read_json(response)
        code = str(data.get("Code", ""))
        if code == "OK":
            return str(data.get("BizId", ""))
        raise DeliveryError(
            f"SendSms {code}: {data.get('Message', '')}",
            retryable=code == RATE_LIMIT_CODE or not code,
            code=code,
            block_s=60.0 if code == RATE_LIMIT_CODE else 0.0,
        )


class SmsChannel(Channel):
    """A text to each mentioned person's phone (the dispatcher makes one delivery per person)."""

    kind: ClassVar[str] = "sms"
    rate_count: int = 100

    def __init__(self, name: str, provider: SmsProvider) -> None:
        super().__init__(name)
        self.provider = provider

    async def send(self, session: aiohttp.ClientSession, message: OutgoingMessage) -> None:
        phones = [(m, m.phone) for m in message.mentions if m.phone]
        if not phones:
            raise DeliveryError("no phone to send to", retryable=False, code="no_phone")
        links = {link.staff.staff_id: link.url for link in message.links}
        for person, phone in phones:
            params = {"alert": message.headline[:60], "link": links.get(person.staff_id, "")}
            await self.provider.send_sms(session, phone, params)
