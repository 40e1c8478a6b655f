"""Hikvision face/temperature terminals (MinMoe DS-K1T… and access controllers) over ISAPI.

What the device sends (verified against public integrations, see docs/edge.md): an HTTP POST to
the listening host registered with ``PUT /ISAPI/Event/notification/httpHosts``
(``parameterFormatType`` json), ``multipart/form-data`` with one JSON part — an envelope
``{"ipAddress", "macAddress", "dateTime", "eventType": "AccessControllerEvent",
"AccessControllerEvent": {"majorEventType", "subEventType", "name", "employeeNoString", "cardNo",
"doorNo", "serialNo", "currentVerifyMode", "mask", "currTemperature", "isAbnomalTemperature",
"thermometryUnit", …}}`` — and JPEG parts (the face picture, dropped here). Some firmware posts
the JSON alone, without multipart or without a Content-Type; heartbeats arrive as
``eventType: "heartBeat"``.

Remote verification (``AcsCfg.remoteCheckDoorEnabled``): the event carries
``"remoteCheck": true`` and the terminal waits for the platform's
``PUT /ISAPI/AccessControl/remoteCheck?format=json``
``{"RemoteCheck": {"serialNo": N, "checkResult": "success"|"failed", "info": "…"}}`` — sent by
the edge service as a :class:`DeviceCall` (Digest auth). The push itself is answered 200 at once:
the terminal stores and resends anything else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from fangxian.edge.adapter import (
    DeviceCall,
    DeviceIdentity,
    DeviceRequest,
    DeviceResponse,
    IdentifierKind,
    MalformedRequest,
    NativeEvent,
    ParsedRequest,
    RefusalReason,
    ScanMethod,
    Verdict,
)
from fangxian.edge.adapters._wire import as_float, as_text, boundary_of, iter_parts, loads_tolerant

REMOTE_CHECK_PATH = "/ISAPI/AccessControl/remoteCheck?format=json"
#: the terminal shows ``info`` (firmware accepts 32 characters on some models, 64 on others)
INFO_CHARS = 32
_CHINA = timezone(timedelta(hours=8))
_ACCESS_EVENT = 5  # majorEventType 5 = "event" (passes, verifications); 1-3 alarms/exceptions/ops
_PERSON_FIELDS = ("employeeNoString", "employeeNo", "cardNo", "currTemperature", "QRCodeInfo")


def _epoch_ms(value: Any) -> int | None:
    text = as_text(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # firmware without a zone speaks local (China) time
        moment = moment.replace(tzinfo=_CHINA)
    return int(moment.timestamp() * 1000)


def _envelope(request: DeviceRequest) -> dict[str, Any] | None:
    """The JSON envelope of a push (``None``: a multipart body without a JSON part)."""
    boundary = boundary_of(request.headers.get("content-type", ""), request.body)
    if boundary is None:
        value, _ = loads_tolerant(request.body, what="Hikvision event JSON")
        if not isinstance(value, dict):
            raise MalformedRequest("bad_json", "the event JSON is not an object")
        return value
    saw_part = False
    for headers, content in iter_parts(request.body, boundary):
        saw_part = True
        ctype = headers.get("content-type", "").lower()
        if "json" in ctype or content.lstrip()[:1] == b"{":
            value, _ = loads_tolerant(content, what="Hikvision event JSON part")
            if not isinstance(value, dict):
                raise MalformedRequest("bad_json", "the event JSON part is not an object")
            return value
        # image/jpeg parts (the face picture) are dropped unread
    if not saw_part:
        raise MalformedRequest("bad_multipart", "no multipart part found for the boundary")
    return None


def _method(ace: dict[str, Any], employee: str | None, card: str | None) -> ScanMethod:
    mode = (as_text(ace.get("currentVerifyMode")) or "").lower()
    if as_text(ace.get("QRCodeInfo")) is not None:
        return "QR"
    if employee is None and card is not None:
        return "CARD"
    if "face" in mode or employee is not None:
        return "FACE"
    if "card" in mode:
        return "CARD"
    return "FACE"


def _celsius(ace: dict[str, Any]) -> float | None:
    value = as_float(ace.get("currTemperature"))
    if value is None or value <= 0:
        return None
    unit = (as_text(ace.get("thermometryUnit")) or "celsius").lower()
    if unit.startswith("fahrenheit"):
        return round((value - 32) * 5 / 9, 2)
    if unit.startswith("kelvin"):
        return round(value - 273.15, 2)
    return value


class HikvisionAdapter:
    vendor: str = "hikvision"
    path_prefixes: tuple[str, ...] = ("/edge/hikvision/",)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        envelope = _envelope(request)
        if envelope is None:
            return ParsedRequest(DeviceIdentity())
        identity = DeviceIdentity(
            serial=as_text(envelope.get("deviceID")) or as_text(envelope.get("serialNumber")),
            mac=as_text(envelope.get("macAddress")),
        )
        ace = envelope.get("AccessControllerEvent")
        if not isinstance(ace, dict):  # heartbeat or another event type: nothing to produce
            return ParsedRequest(identity)
        major = ace.get("majorEventType", ace.get("major"))
        has_person = any(as_text(ace.get(f)) is not None for f in _PERSON_FIELDS)
        if major not in (_ACCESS_EVENT, str(_ACCESS_EVENT)) or (
            not has_person and not ace.get("remoteCheck")
        ):
            return ParsedRequest(identity)  # door status, alarms, operations
        serial = as_text(ace.get("serialNo"))
        if serial is None:
            raise MalformedRequest("missing_field", "AccessControllerEvent has no serialNo")
        employee = as_text(ace.get("employeeNoString")) or as_text(ace.get("employeeNo"))
        card = as_text(ace.get("cardNo"))
        qr = as_text(ace.get("QRCodeInfo"))
        identifier, kind = None, None
        if qr is not None:
            identifier, kind = qr, IdentifierKind.QR
        elif employee is not None:
            identifier, kind = employee, IdentifierKind.EMPLOYEE_NO
        elif card is not None:
            identifier, kind = card, IdentifierKind.CARD_NO
        event = NativeEvent(
            event_serial=serial,
            method=_method(ace, employee, card),
            event_time_ms=_epoch_ms(envelope.get("dateTime") or ace.get("dateTime")),
            identifier=identifier,
            identifier_kind=kind,
            temperature_c=_celsius(ace),
            door=as_text(ace.get("doorNo")),
        )
        waits = bool(ace.get("remoteCheck")) or str(ace.get("remoteCheck")).lower() == "true"
        return ParsedRequest(
            identity, (event,), delivery="callback" if waits else "none", context={}
        )

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        body = {"statusCode": 1, "statusString": "OK", "subStatusCode": "ok"}
        return DeviceResponse.json_bytes(json.dumps(body).encode())

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        calls = []
        for verdict in verdicts:
            try:
                serial: int | str = int(verdict.event_serial)
            except ValueError:
                serial = verdict.event_serial
            info = verdict.message_zh or ("请通行" if verdict.opens else "禁止通行")
            body = {
                "RemoteCheck": {
                    "serialNo": serial,
                    "checkResult": "success" if verdict.opens else "failed",
                    "info": info[:INFO_CHARS],
                }
            }
            calls.append(
                DeviceCall("PUT", REMOTE_CHECK_PATH, json.dumps(body, ensure_ascii=False).encode())
            )
        return tuple(calls)

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        status = {
            RefusalReason.UNKNOWN_DEVICE: 403,
            RefusalReason.UNAUTHENTICATED: 401,
            RefusalReason.MALFORMED: 400,
            RefusalReason.RATE_LIMITED: 429,
            RefusalReason.UNAVAILABLE: 503,
        }[reason]
        body = {"statusCode": 4, "statusString": "Invalid Operation", "subStatusCode": reason.value}
        return DeviceResponse.json_bytes(json.dumps(body).encode(), status)
