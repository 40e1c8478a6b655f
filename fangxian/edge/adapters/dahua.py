"""Dahua access-control terminals: the event push (docs/edge.md, "Dahua").

What arrives (all on the URL configured on the device, ``/edge/dahua/<serial>``):

- ``POST`` ``multipart/mixed; boundary=myboundary`` (also ``multipart/x-mixed-replace`` or
  ``multipart/form-data``): text parts each holding one event frame
  ``Code=AccessControl;action=Pulse;index=0;data={…}`` (the JSON may span lines) or a JSON
  object, and ``image/jpeg`` parts (face snapshots: dropped unread);
- ``POST`` ``text/plain`` (or no Content-Type): one or more such frames; this is also what a
  puller of ``/cgi-bin/eventManager.cgi?action=attach`` hands in, one part per request, with
  the device's serial in the query (``?SN=``);
- ``POST`` ``application/json``: ``{"Events": [{"Code", "Action", "Index", "Data"}]}``.

A frame's ``Data`` of an ``AccessControl`` event carries ``RecNo`` (the device's record number:
the dedupe key), ``UTC`` (epoch seconds), ``UserID``/``CardNo`` (raw: returned only in the
event), ``Method``, ``Type`` (``Entry``/``Exit``), ``Door``, ``Status``/``ErrorCode`` (the
device's own result) and, on thermometer models, ``CurrentTemperature``/``IsOverTemperature``
(top level or under ``ManTemperatureInfo``). Heartbeats and other codes (``DoorStatus``,
``_DoorFace_``, motion) carry no pass and give no event.

The terminal decides locally and only reports (delivery ``"none"``); it wants any 200 with
``OK``, and stores and retries an event whose upload got anything else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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

__all__ = ["DahuaAdapter", "iter_frames", "split_multipart"]

PATH_PREFIX = "/edge/dahua/"
#: the longest identifier (UserID, CardNo) taken; longer is a malformed event, not a truncation
MAX_IDENTIFIER = 128
#: the most event frames one request may carry (an offline backlog upload is a few dozen)
MAX_FRAMES = 1000

# ``Method`` of an AccessControl event. Field captures agree on 1 = card, 5 = exit button,
# 15 = face (rroller/dahua issues #221 and #318, and access-control integrations' test
# payloads); the others follow the HTTP API's door-open method list. 4 (remote) and 5 (exit
# button) open the door with nobody identified: they are not scans.
_NOT_A_SCAN = frozenset({4, 5})
_FACE = frozenset({15, 16, 17, 18, 19, 20})
_CARD = frozenset({1, 2, 3, 9})
_QR = frozenset({13})

_SERIAL_IN_QUERY = ("SN", "sn", "serial", "Serial", "SerialNo", "DeviceID")
_INTEGER_RE = re.compile(r"-?[0-9]{1,19}")
_LENGTH_RE = re.compile(r"[0-9]{1,12}")
_BOUNDARY_RE = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)


class DahuaAdapter:
    """The Dahua access-control event push, as a pure translator."""

    vendor = "dahua"
    path_prefixes = (PATH_PREFIX,)

    def parse(self, request: DeviceRequest) -> ParsedRequest:
        identity = _identity(request)
        events: list[NativeEvent] = []
        for number, event in enumerate(_events_of(request), start=1):
            native = _native_event(event, number)
            if native is not None:
                events.append(native)
        return ParsedRequest(identity=identity, events=tuple(events), delivery="none")

    def answer(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> DeviceResponse:
        return DeviceResponse.text("OK")

    def callbacks(self, parsed: ParsedRequest, verdicts: Sequence[Verdict]) -> Sequence[DeviceCall]:
        return ()

    def refuse(self, reason: RefusalReason) -> DeviceResponse:
        # shaped like the device's own CGI errors ("Error\r\nBad Request!\r\n"); anything but
        # a 200 makes the terminal keep the event and upload it again later
        status, text = _REFUSALS[reason]
        return DeviceResponse.text(f"Error\r\n{text}\r\n", status=status)


_REFUSALS: Mapping[RefusalReason, tuple[int, str]] = {
    RefusalReason.UNKNOWN_DEVICE: (403, "Forbidden!"),
    RefusalReason.UNAUTHENTICATED: (401, "Unauthorized!"),
    RefusalReason.MALFORMED: (400, "Bad Request!"),
    RefusalReason.RATE_LIMITED: (429, "Too Many Requests!"),
    RefusalReason.UNAVAILABLE: (503, "Service Unavailable!"),
}


def _identity(request: DeviceRequest) -> DeviceIdentity:
    serial: str | None = None
    if request.path.startswith(PATH_PREFIX):
        first = request.path[len(PATH_PREFIX) :].split("/", 1)[0].strip()
        serial = first or None
    if serial is None:
        for name in _SERIAL_IN_QUERY:
            value = request.query.get(name, "").strip()
            if value:
                serial = value
                break
    mac = request.query.get("mac") or request.query.get("MAC") or None
    return DeviceIdentity(serial=serial, mac=mac)


# ---------------------------------------------------------------------------------------------
# request body → event dicts


def _events_of(request: DeviceRequest) -> Iterator[Mapping[str, Any]]:
    body = request.body
    boundary = _boundary(request.headers.get("content-type", ""), body)
    if boundary is not None:
        texts = [
            _decode(part, f"part {n}")
            for n, (headers, part) in enumerate(split_multipart(body, boundary), start=1)
            if _is_text_part(headers)
        ]
    else:
        texts = [_decode(body, "body")]
    count = 0
    for text in texts:
        for event in _events_in_text(text):
            count += 1
            if count > MAX_FRAMES:
                raise MalformedRequest("too_many_events", f"more than {MAX_FRAMES} event frames")
            yield event


def _boundary(content_type: str, body: bytes) -> bytes | None:
    """The multipart boundary from the header, else from a body that opens with ``--x``."""
    if content_type.lower().lstrip().startswith("multipart/"):
        found = _BOUNDARY_RE.search(content_type)
        if found:
            return found.group(1).encode("latin-1", "replace")
    head = body.lstrip(b"\r\n\t ")
    if head.startswith(b"--"):
        line = head[2:].split(b"\n", 1)[0].rstrip(b"\r").strip()
        if line and not line.startswith(b"-") and len(line) <= 200:
            return line
    if content_type.lower().lstrip().startswith("multipart/"):
        raise MalformedRequest("bad_multipart", "multipart body without a boundary")
    return None


def split_multipart(body: bytes, boundary: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body as (lower-cased headers, bytes). Tolerates a missing
    closing delimiter (a stream cut between events), LF instead of CRLF and trailing garbage
    after the close; a part's ``Content-Length`` wins over the next delimiter."""
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise MalformedRequest("bad_multipart", "boundary not found in the body")
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter: what follows is epilogue
            return
        chunk = _strip_line_start(chunk)
        if not chunk.strip():
            continue
        headers, content = _split_part(chunk)
        yield headers, content


def _strip_line_start(chunk: bytes) -> bytes:
    # the rest of the delimiter line: optional whitespace, then CRLF or LF
    chunk = chunk.lstrip(b" \t")
    if chunk.startswith(b"\r\n"):
        return chunk[2:]
    if chunk.startswith(b"\n"):
        return chunk[1:]
    return chunk


def _split_part(chunk: bytes) -> tuple[dict[str, str], bytes]:
    crlf, lf = chunk.find(b"\r\n\r\n"), chunk.find(b"\n\n")
    candidates = [(i, n) for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    stripped = chunk.lstrip()
    if stripped.startswith((b"Code=", b"{", b"Heartbeat")) or not candidates:
        return {}, _trim_part_end(chunk)  # a headerless part (some firmware sends the frame bare)
    at, width = min(candidates)
    headers: dict[str, str] = {}
    for line in chunk[:at].replace(b"\r\n", b"\n").split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    content = chunk[at + width :]
    length = headers.get("content-length", "").strip()
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    if _LENGTH_RE.fullmatch(length) and int(length) <= len(content):
        return headers, content[: int(length)]
    return headers, _trim_part_end(content)


def _trim_part_end(content: bytes) -> bytes:
    # the CRLF (or LF) before the next delimiter belongs to the delimiter
    if content.endswith(b"\r\n"):
        return content[:-2]
    if content.endswith(b"\n"):
        return content[:-1]
    return content


def _is_text_part(headers: Mapping[str, str]) -> bool:
    kind = headers.get("content-type", "text/plain").split(";", 1)[0].strip().lower()
    # face snapshots (image/jpeg) and any other binary part are dropped unread
    return kind.startswith("text/") or kind in ("application/json", "")


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:  # Chinese-language firmware writes names in GB2312/GBK
        return data.decode("gb18030")
    except UnicodeDecodeError as err:
        raise MalformedRequest("bad_encoding", f"{where} is neither UTF-8 nor GB18030") from err


def _events_in_text(text: str) -> Iterator[Mapping[str, Any]]:
    stripped = text.strip().strip("\x00")
    if not stripped or stripped.lower().startswith("heartbeat"):
        return
    if stripped.startswith("{"):
        document = _load_json(stripped, "JSON part")
        yield from _events_in_json(document)
        return
    if "Code=" not in stripped:
        raise MalformedRequest("unrecognised_part", "a text part holds neither Code= nor JSON")
    yield from iter_frames(stripped)


def _events_in_json(document: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(document, dict):
        raise MalformedRequest("bad_json", "the JSON part is not an object")
    events = document.get("Events")
    if events is None:
        if "Code" in document:
            yield _event_from_json(document)
            return
        raise MalformedRequest("missing_field", "JSON object without Events or Code")
    if not isinstance(events, list):
        raise MalformedRequest("bad_json", "Events is not a list")
    for event in events:
        if not isinstance(event, dict):
            raise MalformedRequest("bad_json", "an element of Events is not an object")
        yield _event_from_json(event)


def _event_from_json(event: Mapping[str, Any]) -> Mapping[str, Any]:
    code = event.get("Code")
    data = event.get("Data", {})
    if not isinstance(code, str):
        raise MalformedRequest("missing_field", "an event without a Code string")
    if not isinstance(data, dict):
        raise MalformedRequest("bad_json", "an event's Data is not an object")
    return {"Code": code, "Data": data}


def iter_frames(text: str) -> Iterator[Mapping[str, Any]]:
    """The ``Code=…;action=…;index=…;data={…}`` frames in ``text`` as ``{"Code", "Data"}``.

    The JSON after ``data=`` is cut at the brace that closes its first one (strings and
    escapes respected), so a multi-line body, several frames in one part and trailing bytes
    after the JSON are all read; a frame without ``data=`` has empty Data."""
    at = text.find("Code=")
    while at >= 0:
        data_at = text.find("data=", at)
        next_code = text.find("Code=", at + 5)
        if data_at < 0 or (0 <= next_code < data_at):
            end = next_code if next_code >= 0 else len(text)
            header = text[at:end]
            yield {"Code": _frame_code(header), "Data": {}}
            at = next_code
            continue
        header = text[at:data_at]
        start = text.find("{", data_at)
        if start < 0 or text[data_at + 5 : start].strip():
            raise MalformedRequest("bad_frame", "data= is not followed by a JSON object")
        end = _closing_brace(text, start)
        if end < 0:
            raise MalformedRequest("truncated_frame", f"the data JSON at char {start} never closes")
        data = _load_json(text[start : end + 1], "a frame's data")
        if not isinstance(data, dict):
            raise MalformedRequest("bad_json", "a frame's data is not an object")
        yield {"Code": _frame_code(header), "Data": data}
        at = text.find("Code=", end + 1)


def _frame_code(header: str) -> str:
    fields: dict[str, str] = {}
    for item in header.replace("\r", "").replace("\n", "").split(";"):
        name, sep, value = item.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields.get("Code", "")


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise MalformedRequest("bad_json", f"{what} is not valid JSON") from err


# ---------------------------------------------------------------------------------------------
# event dict → NativeEvent


def _native_event(event: Mapping[str, Any], number: int) -> NativeEvent | None:
    if event.get("Code") != "AccessControl":
        return None
    data = event["Data"]
    method_code = _int_field(data, "Method", number)
    if method_code in _NOT_A_SCAN:
        return None
    user_id = _identifier(data, "UserID", number)
    card_no = _identifier(data, "CardNo", number)
    utc = _int_field(data, "UTC", number)
    rec_no = _int_field(data, "RecNo", number)
    if rec_no is not None:
        serial = f"rec{rec_no}"
    elif utc is not None:
        # no record number: what stays the same when the terminal uploads the event again
        door, reader = _short(data.get("Door")), _short(data.get("ReaderID"))
        serial = f"t{utc}-d{door}-r{reader}-m{method_code if method_code is not None else ''}"
    else:
        raise MalformedRequest("missing_field", f"AccessControl event {number} has no RecNo or UTC")
    identifier: str | None
    kind: IdentifierKind | None
    if user_id:
        identifier, kind = user_id, IdentifierKind.EMPLOYEE_NO
    elif card_no:
        identifier, kind = card_no, IdentifierKind.CARD_NO
    else:
        identifier, kind = None, None
    return NativeEvent(
        event_serial=serial,
        method=_scan_method(method_code, card_no),
        event_time_ms=utc * 1000 if utc is not None and utc > 0 else None,
        identifier=identifier,
        identifier_kind=kind,
        temperature_c=_temperature(data, number),
        direction=_direction(data.get("Type")),
        door=_short(data.get("Door")) or None,
    )


def _scan_method(code: int | None, card_no: str | None) -> ScanMethod:
    if code in _FACE:
        return "FACE"
    if code in _QR:
        return "QR"
    if code in _CARD or (code is None and card_no):
        return "CARD"
    return "MANUAL"  # password, fingerprint and unknown methods: checked by the terminal itself


def _direction(value: Any) -> Direction | None:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "entry":
            return "IN"
        if lowered == "exit":
            return "OUT"
    return None


def _temperature(data: Mapping[str, Any], number: int) -> float | None:
    source: Mapping[str, Any] = data
    nested = data.get("ManTemperatureInfo")
    if isinstance(nested, dict) and "CurrentTemperature" in nested:
        source = nested
    raw = source.get("CurrentTemperature")
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise MalformedRequest("bad_field", f"event {number}: CurrentTemperature is not a number")
    try:
        value = float(raw)
    except ValueError as err:
        raise MalformedRequest(
            "bad_field", f"event {number}: CurrentTemperature is not a number"
        ) from err
    if not math.isfinite(value):
        raise MalformedRequest("bad_field", f"event {number}: CurrentTemperature is not finite")
    if value == 0:
        return None  # the terminal measured nothing (no thermometer fitted or not triggered)
    unit = source.get("TemperatureUnit")
    if unit in (1, "1", "F", "Fahrenheit"):
        value = (value - 32.0) * 5.0 / 9.0
    return round(value, 2)


def _identifier(data: Mapping[str, Any], name: str, number: int) -> str | None:
    raw = data.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise MalformedRequest("bad_field", f"event {number}: {name} is not a string")
    value = str(raw).strip()
    if len(value) > MAX_IDENTIFIER:
        raise MalformedRequest("bad_field", f"event {number}: {name} longer than {MAX_IDENTIFIER}")
    return value or None


def _int_field(data: Mapping[str, Any], name: str, number: int) -> int | None:
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise MalformedRequest("bad_field", f"event {number}: {name} is not an integer")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and _INTEGER_RE.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        raise MalformedRequest("bad_field", f"event {number}: {name} is not an integer")
    if abs(value) >= 2**63:
        raise MalformedRequest("bad_field", f"event {number}: {name} out of range")
    return value


def _short(value: Any) -> str:
    """A small non-identifying field (door, reader) as text for a serial or ``door``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return ""
    return str(value).strip()[:16]
