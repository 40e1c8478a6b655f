"""Small parsers the device families share: tolerant JSON, multipart bodies, ``&&`` forms.

Pure functions, no I/O. Errors are :class:`~fangxian.edge.adapter.MalformedRequest` with a
detail that never quotes the payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from fangxian.edge.adapter import MalformedRequest

_BOUNDARY = re.compile(r"boundary=(?:\"([^\"]+)\"|([^;\s]+))", re.IGNORECASE)
_CLOSERS = {"{": "}", "[": "]"}


def _closing_suffix(text: str) -> str | None:
    """What closes a JSON text cut off after a complete token (``None``: cannot tell)."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "}]" and (not stack or stack.pop() != ch):
            return None
    if not stack and not in_string:
        return None
    return ('"' if in_string else "") + "".join(reversed(stack))


def loads_tolerant(body: bytes, *, what: str = "JSON", repair: bool = False) -> tuple[Any, bool]:
    """Parse JSON as devices send it: UTF-8 or GB18030, a BOM, trailing NULs, and — as plate
    cameras do — with ``repair``, a body cut off before its closing quotes and braces (closed
    here; the second value says whether it was repaired). Raises ``MalformedRequest``
    otherwise. Only families known to cut their JSON short repair: a cut identifier would
    otherwise pass as a different one."""
    if not body.strip(b"\x00 \t\r\n"):
        raise MalformedRequest("empty_body", f"the {what} body is empty")
    raw = body.rstrip(b"\x00 \t\r\n")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
        except UnicodeDecodeError as err:
            raise MalformedRequest("bad_encoding", f"{what} is neither UTF-8 nor GB18030") from err
    try:
        return json.loads(text), False
    except json.JSONDecodeError as err:
        first = err
    suffix = _closing_suffix(text) if repair else None
    if suffix is not None:
        for candidate in (text + suffix, text.rstrip(",: \t\r\n") + suffix):
            try:
                return json.loads(candidate), True
            except json.JSONDecodeError:
                continue
    raise MalformedRequest(
        "bad_json", f"{what} does not parse (line {first.lineno} column {first.colno})"
    ) from first


def boundary_of(content_type_header: str, body: bytes) -> str | None:
    """The multipart boundary from the header, or sniffed from a body starting ``--X``."""
    m = _BOUNDARY.search(content_type_header or "")
    if m:
        return (m.group(1) or m.group(2)).strip()
    head = body.lstrip(b"\r\n")[:200]
    if head.startswith(b"--"):
        line = head.split(b"\n", 1)[0].rstrip(b"\r")
        if 3 <= len(line) <= 72:
            return line[2:].decode("latin-1")
    return None


def iter_parts(body: bytes, boundary: str) -> Iterator[tuple[dict[str, str], bytes]]:
    """``(headers, content)`` of each part; tolerates LF-only line ends and a missing final
    delimiter (a device that stops sending after the last part)."""
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        for sep in (b"\r\n\r\n", b"\n\n"):
            head, found, content = chunk.partition(sep)
            if found:
                break
        else:
            continue
        headers: dict[str, str] = {}
        for line in head.splitlines():
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        yield headers, content


def parse_ampersand_form(body: bytes) -> dict[str, str]:
    """``a=1&&b=2&&c=`` (the QR readers' form) or an ordinary ``a=1&b=2`` form."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = body.decode("gb18030", "replace").strip()
    pieces = text.split("&&") if "&&" in text else text.split("&")
    out: dict[str, str] = {}
    for piece in pieces:
        name, eq, value = piece.partition("=")
        if eq and name.strip():
            out.setdefault(name.strip().lower(), unquote_plus(value).strip())
    return out


def as_text(value: Any) -> str | None:
    """A device's string-or-number field as clean text (``None`` for empty/placeholder)."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    if not text or text.lower() in ("undefined", "invalid", "unknown", "null", "none"):
        return None
    return text


def as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and abs(out) < 1e13 else None  # NaN, infinities → none
