"""The generic JSON API: any device or integrator POSTs a scan and gets the decision back.

``POST /edge/api/v1/scans`` with one scan (or ``{"scans": [...]}``, up to 50), answered
``200 {"results": [{"event_serial", "decision", "opens", "source", "reasons"}]}`` once the
decisions are in (or the fallback answered). The OpenAPI 3.1 document is :data:`OPENAPI`,
served by the edge at ``/openapi.json``. Authentication is the service's (HTTP Basic with the
device's credentials, or the per-device secret in the path ``/d/<secret>/edge/api/v1/scans``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

from fangxian.edge.adapter import (
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
from fangxian.edge.adapters._wire import as_float, as_text, loads_tolerant

MAX_SCANS = 50
_METHODS = get_args(ScanMethod)
_DIRECTIONS = get_args(Direction)
_KINDS = tuple(k.value for k in IdentifierKind)
_STATUS = {
    RefusalReason.UNKNOWN_DEVICE: 403,
    RefusalReason.UNAUTHENTICATED: 401,
    RefusalReason.MALFORMED: 400,
    RefusalReason.RATE_LIMITED: 429,
    RefusalReason.UNAVAILABLE: 503,
}

_DECISIONS = ["ALLOW", "WARN", "RECHECK", "DENY"]
_JSON: dict[str, Any] = {"application/json": {}}
_SCAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_serial", "method"],
    "properties": {
        "device_id": {"type": "string", "description": "the register's device id / serial"},
        "event_serial": {
            "type": "string",
            "description": "the device's own number for this scan; a resend with the same "
            "serial is the same event (deduplicated)",
        },
        "event_time": {
            "description": "epoch milliseconds or ISO 8601 with offset; absent: arrival time",
            "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
        },
        "method": {"type": "string", "enum": list(_METHODS)},
        "identifier": {
            "type": "string",
            "description": "as the device read it; pseudonymised at the edge, never stored raw",
        },
        "identifier_kind": {"type": "string", "enum": list(_KINDS)},
        "temperature_c": {"type": "number"},
        "direction": {"type": "string", "enum": list(_DIRECTIONS)},
        "health_code": {"type": "string", "enum": ["GREEN", "YELLOW", "RED"]},
        "wait": {
            "type": "boolean",
            "default": True,
            "description": "false: only report, answered at once without a decision",
        },
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "fangxian edge — generic gate API 防线边缘网关通用接口",
        "version": "1",
        "description": "POST a scan, get the gate decision (ALLOW/WARN/RECHECK/DENY) in the "
        "response. 上报一次通行，在同一应答中得到放行/提醒/复测/拒绝。",
    },
    "paths": {
        "/edge/api/v1/scans": {
            "post": {
                "summary": "report a scan and wait for its decision",
                "security": [{"basic": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _SCAN_SCHEMA,
                                    {
                                        "type": "object",
                                        "required": ["scans"],
                                        "properties": {
                                            "device_id": {"type": "string"},
                                            "scans": {
                                                "type": "array",
                                                "maxItems": MAX_SCANS,
                                                "items": _SCAN_SCHEMA,
                                            },
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "one result per scan",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "results": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "event_serial": {"type": "string"},
                                                    "decision": {
                                                        "type": "string",
                                                        "enum": _DECISIONS,
                                                    },
                                                    "opens": {"type": "boolean"},
                                                    "source": {
                                                        "type": "string",
                                                        "enum": ["core", "edge-fallback"],
                                                    },
                                                    "reasons": {
                                                        "type": "array",
                                                        "items": {"type": "string"},
                                                    },
                                                },
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    **{
                        str(code): {"description": reason.value, "content": _JSON}
                        for reason, code in _STATUS.items()
                    },
                },
            }
        }
    },
    "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
}


def _time_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = as_text(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise MalformedRequest("bad_field", "event_time is not ISO 8601 or epoch ms") from err
    if moment.tzinfo is None:
        raise MalformedRequest("bad_field", "event_time needs a UTC offset")
    return int(moment.timestamp() * 1000)


def _scan(item: Any, index: int) -> NativeEvent:
    if not isinstance(item, dict):
        raise MalformedRequest("bad_field", f"scan {index} is not an object")
    serial = as_text(item.get("event_serial"))
    method = as_text(item.get("method"))
    if serial is None:
        raise MalformedRequest("missing_field", f"scan {index} has no event_serial")
    if method not in _METHODS:
        raise MalformedRequest("bad_field", f"scan {index}: method must be one of {_METHODS}")
    kind_text = as_text(item.get("identifier_kind"))
    identifier = as_text(item.get("identifier"))
    if kind_text is not None and kind_text not in _KINDS:
        raise MalformedRequest("bad_field", f"scan {index}: unknown identifier_kind")
    direction = as_text(item.get("direction"))
    if direction is not None and direction not in _DIRECTIONS:
        raise MalformedRequest("bad_field", f"scan {index}: direction must be IN or OUT")
    health = as_text(item.get("health_code"))
    if health is not None and health not in ("GREEN", "YELLOW", "RED"):
        raise MalformedRequest("bad_field", f"scan {index}: unknown health_code")
    default_kind = IdentifierKind.PLATE if method == "PLATE" else IdentifierKind.OPAQUE
    return NativeEvent(
        event_serial=serial,
        method=method,  # type: ignore[arg-type]
        event_time_ms=_time_ms(item.get("event_time")),
        identifier=identifier,
        identifier_kind=IdentifierKind(kind_text) if kind_text else default_kind,
        temperature_c=as_float(item.get("temperature_c")),
        direction=direction,  # type: ignore[arg-type]
        health_code=health,  # type: ignore[arg-type]
    )


class GenericJsonAdapter:
    vendor: str = "generic"
    path_prefixes: tuple[str, ...] = ("/edge/api/v1/",)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        if request.method != "POST" or not request.path.rstrip("/").endswith("/scans"):
            raise MalformedRequest("bad_route", "only POST /edge/api/v1/scans is served")
        body, _ = loads_tolerant(request.body, what="scan JSON")
        if not isinstance(body, dict):
            raise MalformedRequest("bad_json", "the body is not a JSON object")
        items = body.get("scans") if "scans" in body else [body]
        if not isinstance(items, list) or not items or len(items) > MAX_SCANS:
            raise MalformedRequest("bad_field", f"scans must be a list of 1 to {MAX_SCANS}")
        events = tuple(_scan(item, i) for i, item in enumerate(items))
        wait = body.get("wait", items[0].get("wait", True) if isinstance(items[0], dict) else True)
        device = as_text(body.get("device_id")) or request.query.get("device_id")
        return ParsedRequest(
            DeviceIdentity(serial=device),
            events,
            delivery="response" if wait is not False else "none",
        )

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        if not verdicts:
            results: list[dict[str, Any]] = [
                {"event_serial": e.event_serial, "accepted": True} for e in parsed.events
            ]
        else:
            results = [
                {
                    "event_serial": v.event_serial,
                    "decision": v.decision,
                    "opens": v.opens,
                    "source": v.source,
                    "reasons": list(v.reasons),
                }
                for v in verdicts
            ]
        return DeviceResponse.json_bytes(json.dumps({"results": results}).encode())

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        return ()

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        body = json.dumps({"error": reason.value})
        return DeviceResponse.json_bytes(body.encode(), _STATUS[reason])
