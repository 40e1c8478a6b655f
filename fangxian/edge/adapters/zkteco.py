"""ZKTeco terminals over PUSH (ADMS): the terminal is the HTTP client (docs/edge.md, "ZKTeco").

The paths are fixed in the firmware, under ``/iclock/``; the terminal names itself by ``SN=``
in every query:

- ``GET /iclock/cdata?SN=…&options=all[&pushver=…]``: the handshake; the answer is plain text
  starting ``GET OPTION FROM: <SN>`` followed by ``Key=Value`` lines (stamps, ``Delay``,
  ``ErrorDelay``, ``Realtime``, ``TransFlag``, ``TimeZone``, ``TimeoutSec``).
- ``POST /iclock/cdata?SN=…&table=ATTLOG&Stamp=…``: attendance records, one a line, tab
  separated: PIN, local time ``YYYY-MM-DD HH:MM:SS``, status (punch state), verify mode,
  work code, reserved… (some firmware writes ``time=…\\tpin=…\\t…`` pairs here instead). The
  answer is ``OK:<rows>``.
- ``POST /iclock/cdata?SN=…&table=rtlog``: access events as ``key=value`` pairs (``time``,
  ``pin``, ``cardno``, ``eventaddr``, ``event``, ``inoutstatus``, ``verifytype``, ``index``
  — the device's record number —, on thermometer models ``temperature``). Answer ``OK``.
- other tables (``OPERLOG``, ``ATTPHOTO``, ``BIODATA``, ``options``, ``tabledata``): ``OK``,
  nothing taken (photos and templates are dropped unread).
- ``GET /iclock/getrequest?SN=``: the command poll; ``OK`` is "no command" (commands would be
  ``C:<id>:<cmd>`` lines). ``POST /iclock/devicecmd``: command results; ``OK``.
- PUSH 3 firmware also calls ``POST /iclock/registry`` (answered ``RegistryCode=…``),
  ``POST /iclock/push`` (answered with the options) and ``GET /iclock/ping`` (``OK``).

Every answer is plain text. A terminal that gets anything but a 200 starting with ``OK`` (a JSON
body included) keeps the batch and sends it again after ``ErrorDelay`` seconds. Record times are
the terminal's local wall clock: the adapter's ``utc_offset_minutes`` (China: +480) turns them
into UTC, and the handshake sets the same ``TimeZone`` on the terminal.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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

__all__ = ["ZktecoAdapter"]

PATH_PREFIX = "/iclock/"
MAX_IDENTIFIER = 64
MAX_RECORDS = 10_000
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_INT_RE = re.compile(r"-?[0-9]{1,9}")

# verify modes (ATTLOG's 4th column, rtlog's ``verifytype``): 15 is face on both kinds of
# firmware, 2 (attendance) and 4 (access control) are card; password (0/3), fingerprint (1)
# and the combined modes are checked by the terminal itself and carried as MANUAL
_FACE = frozenset({15})
_CARD = frozenset({2, 4})
# ATTLOG punch state: 0 is "check in" but also the factory default of terminals without state
# keys, so it says nothing; 1 check-out, 2 break-out, 3 break-in, 4 overtime-in, 5 overtime-out
_STATUS_DIRECTION: Mapping[int, Direction] = {1: "OUT", 2: "OUT", 3: "IN", 4: "IN", 5: "OUT"}
_INOUT_DIRECTION: Mapping[int, Direction] = {0: "IN", 1: "OUT"}
# tables whose records are not passes: answered OK, nothing taken
_IGNORED_TABLES = frozenset(
    {"operlog", "attphoto", "biodata", "biophoto", "options", "tabledata", "errorlog", "rtstate"}
)
_QUIET_ENDPOINTS = frozenset({"ping", "fdata", "querydata", "devicecmd"})


@dataclass(frozen=True, slots=True)
class ZktecoAdapter:
    """ZKTeco PUSH/ADMS, as a pure translator.

    ``utc_offset_minutes``: the terminals' wall clock (their ``TimeZone``); ``delay_s``: how often
    a terminal polls ``getrequest``; ``error_delay_s``: how long it waits before resending a
    refused batch; ``timeout_s``: its HTTP timeout.
    """

    utc_offset_minutes: int = 480
    delay_s: int = 10
    error_delay_s: int = 30
    timeout_s: int = 10

    vendor = "zkteco"
    path_prefixes = (PATH_PREFIX,)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        serial = (request.query.get("SN") or request.query.get("sn") or "").strip()
        identity = DeviceIdentity(serial=serial or None)
        endpoint = _endpoint(request.path)
        method = request.method.upper()
        if endpoint == "cdata" and method == "GET":
            return ParsedRequest(identity, context={"kind": "handshake", "sn": serial})
        if endpoint == "cdata" and method == "POST":
            table = request.query.get("table", "").strip()
            if table.upper() == "ATTLOG":
                events = self._attlog(_text(request.body))
                rows = str(len(events))
                return ParsedRequest(identity, events, context={"kind": "attlog", "rows": rows})
            if table.lower() == "rtlog":
                events = self._rtlog(_text(request.body))
                return ParsedRequest(identity, events, context={"kind": "rtlog"})
            if table.lower() in _IGNORED_TABLES:
                return ParsedRequest(identity, context={"kind": "ok"})
            raise MalformedRequest(
                "unknown_table", "cdata upload of a table this edge does not know"
            )
        if endpoint == "getrequest":
            return ParsedRequest(identity, context={"kind": "ok"})
        if endpoint == "registry" and method == "POST":
            return ParsedRequest(identity, context={"kind": "registry", "sn": serial})
        if endpoint == "push":
            return ParsedRequest(identity, context={"kind": "push", "sn": serial})
        if endpoint in _QUIET_ENDPOINTS:
            return ParsedRequest(identity, context={"kind": "ok"})
        raise MalformedRequest("unknown_endpoint", f"{method} on an /iclock/ path not in PUSH")

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        kind = parsed.context.get("kind", "ok")
        if kind == "handshake":
            sn = parsed.context.get("sn", "")
            return DeviceResponse.text(f"GET OPTION FROM: {sn}\n" + self._options())
        if kind == "push":
            return DeviceResponse.text(self._options())
        if kind == "registry":
            code = hashlib.sha256(parsed.context.get("sn", "").encode()).hexdigest()[:16]
            return DeviceResponse.text(f"RegistryCode={code}\n")
        if kind == "attlog":
            return DeviceResponse.text(f"OK:{parsed.context.get('rows', '0')}\n")
        return DeviceResponse.text("OK\n")

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        return ()

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        # plain text, never JSON: the terminal only looks for "OK", resends after ErrorDelay
        status = {
            RefusalReason.UNKNOWN_DEVICE: 403,
            RefusalReason.UNAUTHENTICATED: 401,
            RefusalReason.MALFORMED: 400,
            RefusalReason.RATE_LIMITED: 503,
            RefusalReason.UNAVAILABLE: 503,
        }[reason]
        return DeviceResponse.text(f"ERROR: {reason.value}\n", status=status)

    def _options(self) -> str:
        hours = self.utc_offset_minutes / 60
        lines = [
            # records after the stamp are uploaded; None = all not yet sent (a backlog after
            # an outage comes again and is deduplicated by its record key). 9999 turns the
            # operation log and attendance photos off.
            "ATTLOGStamp=None",
            "OPERLOGStamp=9999",
            "ATTPHOTOStamp=9999",
            f"ErrorDelay={self.error_delay_s}",
            f"Delay={self.delay_s}",
            "TransTimes=00:00;14:05",
            "TransInterval=1",
            "TransFlag=TransData AttLog",
            f"TimeZone={hours:g}",
            "Realtime=1",
            "Encrypt=None",
            f"TimeoutSec={self.timeout_s}",
        ]
        return "\n".join(lines) + "\n"

    # -- records ----------------------------------------------------------------------------

    def _attlog(self, text: str) -> tuple[NativeEvent, ...]:
        events: list[NativeEvent] = []
        for number, line in _lines(text):
            if "time=" in line and "=" in line.split("\t", 1)[0]:
                event = self._access_record(_pairs(line, number), number)
                if event is not None:
                    events.append(event)
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise MalformedRequest(
                    "bad_record", f"ATTLOG line {number} has fewer than 2 fields"
                )
            pin = _identifier(fields[0], "PIN", number)
            if pin is None:
                raise MalformedRequest("missing_field", f"ATTLOG line {number} has no PIN")
            stamp = _timestamp(fields[1], number)
            status = _int(fields[2] if len(fields) > 2 else "", "status", number)
            verify = _int(fields[3] if len(fields) > 3 else "", "verify", number)
            workcode = fields[4].strip()[:16] if len(fields) > 4 else ""
            # ATTLOG has no record number: what stays the same when the batch is sent again
            serial = f"att-{fields[1].strip()}-s{status}-v{verify}-w{workcode}"
            events.append(
                NativeEvent(
                    event_serial=serial.replace(" ", "T"),
                    per_person=True,  # two people in the same second: two events
                    method=_scan_method(verify),
                    event_time_ms=self._utc_ms(stamp),
                    identifier=pin,
                    identifier_kind=IdentifierKind.EMPLOYEE_NO,
                    direction=_STATUS_DIRECTION.get(status) if status is not None else None,
                )
            )
        return tuple(events)

    def _rtlog(self, text: str) -> tuple[NativeEvent, ...]:
        events: list[NativeEvent] = []
        for number, line in _lines(text):
            event = self._access_record(_pairs(line, number), number)
            if event is not None:
                events.append(event)
        return tuple(events)

    def _access_record(self, pairs: Mapping[str, str], number: int) -> NativeEvent | None:
        if "time" not in pairs:
            raise MalformedRequest("missing_field", f"record {number} has no time")
        stamp = _timestamp(pairs["time"], number)
        pin = _identifier(pairs.get("pin", ""), "pin", number)
        card = _identifier(pairs.get("cardno", ""), "cardno", number)
        pin = None if pin == "0" else pin
        card = None if card == "0" else card
        temperature = _temperature(pairs.get("temperature", ""), number)
        if pin is None and card is None and temperature is None:
            return None  # a door, alarm or button record: nobody scanned
        verify = _int(pairs.get("verifytype", ""), "verifytype", number)
        index = _int(pairs.get("index", ""), "index", number)
        event_code = _int(pairs.get("event", ""), "event", number)
        door = pairs.get("eventaddr", "").strip()[:16]
        per_person = not (index is not None and index > 0)
        if not per_person:
            serial = f"rt{index}"
        else:
            serial = f"rt-{pairs['time'].strip()}-e{event_code}-d{door}-v{verify}".replace(" ", "T")
        inout = _int(pairs.get("inoutstatus", ""), "inoutstatus", number)
        identifier, kind = (
            (pin, IdentifierKind.EMPLOYEE_NO) if pin else (card, IdentifierKind.CARD_NO)
        )
        return NativeEvent(
            event_serial=serial,
            per_person=per_person,
            method=_scan_method(verify),
            event_time_ms=self._utc_ms(stamp),
            identifier=identifier,
            identifier_kind=kind if identifier else None,
            temperature_c=temperature,
            direction=_INOUT_DIRECTION.get(inout) if inout is not None else None,
            door=door or None,
        )

    def _utc_ms(self, local: datetime) -> int:
        utc = (local - timedelta(minutes=self.utc_offset_minutes)).replace(tzinfo=UTC)
        return int(utc.timestamp() * 1000)


def _endpoint(path: str) -> str:
    rest = path[len(PATH_PREFIX) :] if path.startswith(PATH_PREFIX) else path
    name = rest.strip("/").split("/", 1)[0].lower()
    return name.removesuffix(".aspx")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:  # Chinese-language firmware
        return body.decode("gb18030")
    except UnicodeDecodeError as err:
        raise MalformedRequest("bad_encoding", "the body is neither UTF-8 nor GB18030") from err


def _lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw.strip(" \x00")
        if line.strip():
            out.append((number, line))
    if len(out) > MAX_RECORDS:
        raise MalformedRequest("too_many_records", f"more than {MAX_RECORDS} records")
    return out


def _pairs(line: str, number: int) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in line.split("\t"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise MalformedRequest("bad_record", f"record {number}: a field is not key=value")
        pairs[name.strip().lower()] = value.strip()
    return pairs


def _timestamp(value: str, number: int) -> datetime:
    text = value.strip()
    if not _TIME_RE.fullmatch(text):
        raise MalformedRequest("bad_time", f"record {number}: time is not YYYY-MM-DD HH:MM:SS")
    try:
        stamp = datetime.strptime(text, _TIME_FORMAT)
    except ValueError as err:
        raise MalformedRequest("bad_time", f"record {number}: time is not a calendar time") from err
    if not 2000 <= stamp.year <= 2099:
        raise MalformedRequest("bad_time", f"record {number}: year outside 2000-2099")
    return stamp


def _identifier(value: str, name: str, number: int) -> str | None:
    text = value.strip()
    if len(text) > MAX_IDENTIFIER:
        raise MalformedRequest("bad_field", f"record {number}: {name} longer than {MAX_IDENTIFIER}")
    return text or None


def _int(value: str, name: str, number: int) -> int | None:
    text = value.strip()
    if not text:
        return None
    if not _INT_RE.fullmatch(text):
        raise MalformedRequest("bad_field", f"record {number}: {name} is not an integer")
    return int(text)


def _temperature(value: str, number: int) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        reading = float(text)
    except ValueError as err:
        raise MalformedRequest("bad_field", f"record {number}: temperature not a number") from err
    if not math.isfinite(reading):
        raise MalformedRequest("bad_field", f"record {number}: temperature not finite")
    if reading <= 0 or reading >= 255:
        return None  # 0 and 255 are what terminals without a measurement write
    return round(reading, 2)


def _scan_method(verify: int | None) -> ScanMethod:
    if verify in _FACE:
        return "FACE"
    if verify in _CARD:
        return "CARD"
    return "MANUAL"
