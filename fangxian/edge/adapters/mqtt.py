"""MQTT gate controllers and gateways: fangxian's own topic layout (docs/edge.md, "MQTT").

Topics (``<community>`` is the community's 18-character code, ``<device>`` the device's serial as
in the register, which is also its MQTT user name):

- ``fangxian/<community>/<device>/pass`` — the gateway publishes one JSON object per pass
  (QoS 1), or ``{"events": [...]}`` for a backlog it stored while offline;
- ``fangxian/<community>/<device>/decision`` — the edge publishes the answer (QoS 1).

A pass::

    {"seq": 1024, "ts": 1796550000123, "method": "CARD", "id": "<raw>", "id_kind": "card_no",
     "temperature_c": 36.6, "direction": "IN", "door": "1", "health_code": "GREEN",
     "offline": false, "wait_ms": 1500}

``seq`` (the gateway's own event number: the dedupe key) and ``method`` (the contract's
``ScanMethod``) are required; ``ts`` is UTC epoch milliseconds (or ISO 8601 with an offset);
``id_kind`` defaults by method (CARD: ``card_no``, QR and HEALTH_CODE: ``qr``, PLATE:
``plate``, FACE: ``employee_no``, MANUAL: ``opaque``). A live pass waits for its decision
(delivery ``"response"``)::

    {"seq": "1024", "decision": "ALLOW", "open": true, "source": "core", "reasons": [],
     "message_zh": "", "message_en": ""}

An offline pass or a backlog is acknowledged (``{"ack": ["1020", "1021"]}``) so the gateway can
drop what it stored; a refusal is ``{"error": "<reason>"}``. The MQTT client that carries
these is ``fangxian.edge.mqtt_transport``; this module only translates.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast, get_args

from fangxian.edge.adapter import (
    Delivery,
    DeviceCall,
    DeviceIdentity,
    DeviceRequest,
    DeviceResponse,
    Direction,
    IdentifierKind,
    MalformedRequest,
    NativeEvent,
    ParsedRequest,
    RefusalReason,
    ScanMethod,
    Verdict,
)

__all__ = [
    "PASS_SUFFIX",
    "TOPIC_ROOT",
    "MqttAdapter",
    "decision_topic",
    "pass_subscription",
    "pass_topic",
    "reply_topic",
]

TOPIC_ROOT = "fangxian"
PASS_SUFFIX = "pass"
DECISION_SUFFIX = "decision"
MAX_IDENTIFIER = 256
MAX_BACKLOG = 1000
MAX_WAIT_MS = 60_000

_SEGMENT = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_METHODS: tuple[str, ...] = get_args(ScanMethod)
_DEFAULT_KIND: Mapping[str, IdentifierKind] = {
    "CARD": IdentifierKind.CARD_NO,
    "QR": IdentifierKind.QR,
    "HEALTH_CODE": IdentifierKind.QR,
    "PLATE": IdentifierKind.PLATE,
    "FACE": IdentifierKind.EMPLOYEE_NO,
    "MANUAL": IdentifierKind.OPAQUE,
}
_KINDS = {kind.value: kind for kind in IdentifierKind}


def pass_topic(community: str, device: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{community}/{device}/{PASS_SUFFIX}"


def decision_topic(community: str, device: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{community}/{device}/{DECISION_SUFFIX}"


def pass_subscription(root: str = TOPIC_ROOT) -> str:
    """What the edge subscribes to: every device's pass topic."""
    return f"{root}/+/+/{PASS_SUFFIX}"


def _topic_parts(topic: str) -> tuple[str, str, str] | None:
    parts = topic.split("/")
    if len(parts) != 4 or parts[3] != PASS_SUFFIX:
        return None
    root, community, device = parts[0], parts[1], parts[2]
    if not root or not _SEGMENT.fullmatch(community) or not _SEGMENT.fullmatch(device):
        return None
    return root, community, device


def reply_topic(topic: str) -> str | None:
    """The decision topic answering a publish on ``topic`` (``None``: not a pass topic)."""
    parts = _topic_parts(topic)
    if parts is None:
        return None
    root, community, device = parts
    return decision_topic(community, device, root)


class MqttAdapter:
    """MQTT passes in, decisions out, as a pure translator (``path`` is the MQTT topic)."""

    vendor = "mqtt"
    path_prefixes = (f"{TOPIC_ROOT}/",)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        parts = _topic_parts(request.path)
        if parts is None:
            raise MalformedRequest("bad_topic", "not a <root>/<community>/<device>/pass topic")
        _, community, device = parts
        document = _load(request.body)
        context = {"community": community, "device": device}
        if isinstance(document, dict) and "events" in document:
            items = document["events"]
            if not isinstance(items, list):
                raise MalformedRequest("bad_field", "events is not a list")
            if len(items) > MAX_BACKLOG:
                raise MalformedRequest("too_many_events", f"more than {MAX_BACKLOG} events")
            events = tuple(_event(item, n, offline=True) for n, item in enumerate(items, 1))
            return ParsedRequest(
                DeviceIdentity(serial=device), events, "none", context={**context, "kind": "ack"}
            )
        event = _event(document, 1, offline=False)
        wait = _wait_ms(document)
        delivery: Delivery = "none" if event.offline else "response"
        return ParsedRequest(
            DeviceIdentity(serial=device),
            (event,),
            delivery,
            timeout_ms=wait,
            context={**context, "kind": "ack" if event.offline else "decision"},
        )

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        if parsed.context.get("kind") == "decision" and parsed.events:
            serial = parsed.events[0].event_serial
            verdict = next((v for v in verdicts if v.event_serial == serial), None)
            if verdict is not None:
                body = {
                    "seq": serial,
                    "decision": verdict.decision,
                    "open": verdict.opens,
                    "source": verdict.source,
                    "reasons": list(verdict.reasons),
                    "message_zh": verdict.message_zh,
                    "message_en": verdict.message_en,
                }
                return DeviceResponse.json_bytes(_dumps(body))
        return DeviceResponse.json_bytes(_dumps({"ack": [e.event_serial for e in parsed.events]}))

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        return ()

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        status = {
            RefusalReason.UNKNOWN_DEVICE: 403,
            RefusalReason.UNAUTHENTICATED: 401,
            RefusalReason.MALFORMED: 400,
            RefusalReason.RATE_LIMITED: 429,
            RefusalReason.UNAVAILABLE: 503,
        }[reason]
        return DeviceResponse.json_bytes(_dumps({"error": reason.value}), status=status)


def _dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _load(body: bytes) -> Any:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise MalformedRequest("bad_encoding", "the payload is not UTF-8") from err
    text = text.strip().rstrip("\x00")
    if not text:
        raise MalformedRequest("empty_body", "the payload is empty")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise MalformedRequest("bad_json", "the payload is not valid JSON") from err


def _event(item: Any, number: int, *, offline: bool) -> NativeEvent:
    if not isinstance(item, dict):
        raise MalformedRequest("bad_json", f"event {number} is not an object")
    seq = item.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int | str) or not str(seq).strip():
        raise MalformedRequest("missing_field", f"event {number} has no seq")
    serial = str(seq).strip()
    if len(serial) > 64:
        raise MalformedRequest("bad_field", f"event {number}: seq longer than 64")
    method = item.get("method")
    if method not in _METHODS:
        raise MalformedRequest("bad_field", f"event {number}: method is not a ScanMethod")
    identifier = item.get("id")
    if identifier is not None:
        if not isinstance(identifier, str):
            raise MalformedRequest("bad_field", f"event {number}: id is not a string")
        identifier = identifier.strip() or None
        if identifier is not None and len(identifier) > MAX_IDENTIFIER:
            raise MalformedRequest("bad_field", f"event {number}: id longer than {MAX_IDENTIFIER}")
    kind: IdentifierKind | None = None
    if identifier is not None:
        kind_text = item.get("id_kind")
        if kind_text is None:
            kind = _DEFAULT_KIND[method]
        elif isinstance(kind_text, str) and kind_text in _KINDS:
            kind = _KINDS[kind_text]
        else:
            raise MalformedRequest("bad_field", f"event {number}: id_kind is not known")
    direction = item.get("direction")
    if direction not in (None, "IN", "OUT"):
        raise MalformedRequest("bad_field", f"event {number}: direction is not IN or OUT")
    health = item.get("health_code")
    if health not in (None, "GREEN", "YELLOW", "RED"):
        raise MalformedRequest("bad_field", f"event {number}: health_code is not a colour")
    item_offline = item.get("offline", False)
    if not isinstance(item_offline, bool):
        raise MalformedRequest("bad_field", f"event {number}: offline is not a boolean")
    door = item.get("door")
    if door is not None and (isinstance(door, bool) or not isinstance(door, str | int)):
        raise MalformedRequest("bad_field", f"event {number}: door is not a string")
    return NativeEvent(
        event_serial=serial,
        method=cast(ScanMethod, method),
        event_time_ms=_time_ms(item.get("ts"), number),
        identifier=identifier,
        identifier_kind=kind,
        temperature_c=_temperature(item, number),
        direction=cast(Direction | None, direction),
        health_code=health,
        door=str(door)[:16] if door is not None else None,
        offline=offline or item_offline,
    )


def _time_ms(value: Any, number: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise MalformedRequest("bad_field", f"event {number}: ts is not a time")
    if isinstance(value, int):
        if not 0 < value < 2**53:
            raise MalformedRequest("bad_field", f"event {number}: ts out of range")
        return value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError as err:
            raise MalformedRequest("bad_field", f"event {number}: ts is not ISO 8601") from err
        if when.tzinfo is None:
            raise MalformedRequest("bad_field", f"event {number}: ts has no UTC offset")
        if not 1970 < when.year < 9999:
            raise MalformedRequest("bad_field", f"event {number}: ts out of range")
        return int(when.timestamp() * 1000)
    raise MalformedRequest("bad_field", f"event {number}: ts is not a time")


def _temperature(item: Mapping[str, Any], number: int) -> float | None:
    value = item.get("temperature_c")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRequest("bad_field", f"event {number}: temperature_c is not a number")
    if not math.isfinite(value):
        raise MalformedRequest("bad_field", f"event {number}: temperature_c is not finite")
    return float(value)


def _wait_ms(document: Any) -> int | None:
    value = document.get("wait_ms") if isinstance(document, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_WAIT_MS:
        raise MalformedRequest("bad_field", f"wait_ms is not between 1 and {MAX_WAIT_MS}")
    return value
