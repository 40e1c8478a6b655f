"""A fake Dahua access-control terminal: the device side of its event push (docs/edge.md,
"Dahua").

Each pass becomes a record with the terminal's next ``RecNo``; :meth:`FakeDahuaTerminal.upload`
posts every stored record as the terminal does — ``multipart/mixed; boundary=myboundary``, a
``text/plain`` part ``Code=AccessControl;action=Pulse;index=0;data={…}`` with the JSON over
several lines, and a JPEG snapshot part — and keeps every record whose upload was not answered
with a 200, to upload it again later. Written from the protocol, not from the adapter. Used by
the tests; nothing here is imported by the edge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: a tiny JPEG stand-in (SOI … EOI): the edge must drop it unread
SNAPSHOT = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2 + b"\xff\xd9"
BOUNDARY = "myboundary"


@dataclass
class DahuaRecord:
    rec_no: int
    data: dict[str, Any]


@dataclass
class FakeDahuaTerminal:
    """``base_url`` is the edge; the upload path carries the serial (``/edge/dahua/<serial>``),
    as an installer configures it on the terminal."""

    base_url: str
    serial: str
    line_end: str = "\r\n"
    with_snapshot: bool = True
    content_type: str | None = f"multipart/mixed; boundary={BOUNDARY}"
    timeout_s: float = 5.0
    stored: list[DahuaRecord] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _rec_no: int = 0

    @property
    def path(self) -> str:
        return f"/edge/dahua/{self.serial}"

    def swipe(
        self,
        *,
        user_id: str | None = None,
        card_no: str | None = None,
        method: int = 15,
        entry: bool = True,
        temperature_c: float | None = None,
        error_code: int = 0,
        utc: int | None = None,
    ) -> int:
        """One pass at the terminal (face by default); returns its ``RecNo``."""
        self._rec_no += 1
        data: dict[str, Any] = {
            "RecNo": self._rec_no,
            "UTC": utc if utc is not None else int(time.time()),
            "UserID": user_id or "",
            "CardNo": card_no or "",
            "CardName": "张三",
            "Method": method,
            "Status": 1 if error_code == 0 else 0,
            "ErrorCode": error_code,
            "Type": "Entry" if entry else "Exit",
            "Door": 0,
            "ReaderID": "1",
        }
        if temperature_c is not None:
            data.update(CurrentTemperature=temperature_c, IsOverTemperature=temperature_c >= 37.3)
        self.stored.append(DahuaRecord(self._rec_no, data))
        return self._rec_no

    def body_of(self, record: DahuaRecord) -> bytes:
        nl = self.line_end
        frame = (
            "Code=AccessControl;action=Pulse;index=0;data="
            + json.dumps(record.data, indent=3, ensure_ascii=False).replace("\n", nl)
        ).encode()
        parts = [("text/plain", frame)]
        if self.with_snapshot:
            parts.append(("image/jpeg", SNAPSHOT))
        out = b""
        for content_type, content in parts:
            head = f"--{BOUNDARY}{nl}Content-Type: {content_type}{nl}"
            head += f"Content-Length: {len(content)}{nl}{nl}"
            out += head.encode() + content + nl.encode()
        return out + f"--{BOUNDARY}--{nl}".encode()

    async def upload(self) -> list[int]:
        """Upload every stored record, one request each; keep those not answered 200. Returns
        the HTTP statuses (0: no answer at all)."""
        statuses: list[int] = []
        kept: list[DahuaRecord] = []
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for record in self.stored:
                try:
                    async with session.post(
                        self.base_url.rstrip("/") + self.path,
                        data=self.body_of(record),
                        headers=headers,
                        skip_auto_headers=() if self.content_type else ("Content-Type",),
                    ) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                statuses.append(status)
                if status != 200:  # the terminal keeps the event and uploads it again
                    kept.append(record)
        self.stored = kept
        self.statuses.extend(statuses)
        return statuses
