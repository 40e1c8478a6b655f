"""Licence-plate cameras in the Zhenshi/VZ IVS style (and Boyue, which copies it).

The camera POSTs ``{"AlarmInfoPlate": {"serialno", "ipaddr", "deviceName", "result":
{"PlateResult": {"license", "colorType", "confidence", "plateid", "isoffline", "triggerType",
"timeStamp": {"Timeval": {"sec", "usec"}}}}}}`` and opens the barrier when the *same response*
says ``{"Response_AlarmInfoPlate": {"info": "ok"}}`` (anything else keeps it closed). Cameras
resend a result a few times when the answer is late and replay an offline backlog
(``isoffline`` 1) when the network is back; some firmware cuts the JSON short (a Boyue
integration appends the missing ``"}}}}``) and some send no Content-Type — both tolerated here.

The event serial is ``plateid`` plus the frame time (``plateid`` restarts after a reboot), so a
resend or a replay is one event. An offline record is answered ``ok`` as an acknowledgement
only: nobody waits at the barrier for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    Verdict,
)
from fangxian.edge.adapters._wire import as_float, as_text, loads_tolerant

#: what cameras put in ``license`` when they saw a vehicle but read no plate
NO_PLATE = frozenset({"_无_", "无牌车", "无", "无车牌", "NONE", ""})
SHOW_CHARS = 32


def _frame_time(result: dict[str, Any]) -> tuple[int | None, str]:
    stamp = result.get("timeStamp")
    timeval = stamp.get("Timeval") if isinstance(stamp, dict) else None
    if isinstance(timeval, dict):
        sec = as_float(timeval.get("sec"))
        usec = as_float(timeval.get("usec")) or 0.0
        if sec is not None and sec > 0:
            return int(sec * 1000 + usec / 1000), f"{int(sec)}.{int(usec):06d}"
    return None, "-"


class PlateCameraAdapter:
    vendor: str = "plate"
    path_prefixes: tuple[str, ...] = ("/edge/plate/",)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        value, _repaired = loads_tolerant(request.body, what="plate camera JSON", repair=True)
        if not isinstance(value, dict):
            raise MalformedRequest("bad_json", "the plate JSON is not an object")
        alarm = value.get("AlarmInfoPlate")
        if not isinstance(alarm, dict):  # heartbeat, IO alarm, comet poll: only answered
            heartbeat = value.get("heartbeat")
            serial = as_text(heartbeat.get("serialno")) if isinstance(heartbeat, dict) else None
            return ParsedRequest(DeviceIdentity(serial=serial), context={"kind": "other"})
        identity = DeviceIdentity(serial=as_text(alarm.get("serialno")))
        result = alarm.get("result")
        plate = result.get("PlateResult") if isinstance(result, dict) else None
        if not isinstance(plate, dict):
            raise MalformedRequest("missing_field", "AlarmInfoPlate has no result.PlateResult")
        plate_id = as_text(plate.get("plateid"))
        if plate_id is None:
            raise MalformedRequest("missing_field", "PlateResult has no plateid")
        event_time, frame = _frame_time(plate)
        licence = as_text(plate.get("license"))
        offline = str(plate.get("isoffline", "0")).strip() == "1"
        event = NativeEvent(
            event_serial=f"{plate_id}@{frame}",
            method="PLATE",
            event_time_ms=event_time,
            identifier=None if licence is None or licence.upper() in NO_PLATE else licence,
            identifier_kind=IdentifierKind.PLATE,
            offline=offline,
        )
        return ParsedRequest(
            identity,
            (event,),
            delivery="none" if offline else "response",
            context={"kind": "plate", "plateid": plate_id},
        )

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        response: dict[str, Any] = {"info": "ok"}
        if parsed.context.get("kind") == "plate":
            try:
                response["plateid"] = int(parsed.context["plateid"])
            except ValueError:
                response["plateid"] = parsed.context["plateid"]
            if verdicts:
                verdict = verdicts[0]
                response["info"] = "ok" if verdict.opens else "no"
                shown = verdict.message_zh or ("请通行" if verdict.opens else "禁止通行")
                response["content"] = shown[:SHOW_CHARS]
        body = json.dumps({"Response_AlarmInfoPlate": response}, ensure_ascii=False)
        return DeviceResponse.json_bytes(body.encode())

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        return ()

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        # a camera retries on a non-200; an unknown or malformed sender gets a closed barrier
        # and a 4xx, "try again" (unavailable, rate limit) a 503/429 so it resends later
        status = {
            RefusalReason.UNKNOWN_DEVICE: 403,
            RefusalReason.UNAUTHENTICATED: 401,
            RefusalReason.MALFORMED: 400,
            RefusalReason.RATE_LIMITED: 429,
            RefusalReason.UNAVAILABLE: 503,
        }[reason]
        body = {"Response_AlarmInfoPlate": {"info": "no", "content": reason.value}}
        return DeviceResponse.json_bytes(json.dumps(body).encode(), status)
