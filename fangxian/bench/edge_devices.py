"""Simulated gate devices for the bench's edge phase, in their own process:
``python -m fangxian.bench.edge_devices JOB.json``.

Each device holds one keep-alive HTTP/1.1 connection to the edge and speaks its family's native
format (``infra.fake_devices``): QR readers (``vgdecoderesult=…&&devicenumber=…``, answer
``code=``), plate cameras (``AlarmInfoPlate``, answer in the same response) and the generic JSON
API. Like a real device it sends its next scan only once the previous one is answered. The
offered load is an open-loop schedule: request ``k`` is due at ``start + k / rate`` on device
``k mod devices``; a device still waiting when its next scan is due sends it late, and how late
is recorded (``behind_ms``) so a load the fleet or the edge could not keep up with shows.

The client is a few lines over asyncio streams, not aiohttp: at a few thousand requests a second
on a shared 2-core machine the client's own CPU is part of what is measured against.

Latency = request written → answer read completely, on this process's monotonic clock (what the
device observes). Written as JSON to the job's ``out``: per request its latency and lateness, the
statuses, errors, and this process's CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from infra.fake_devices import plate_alarm, qr_form

#: a device gives up on an answer after this long (longer than any register timeout)
GIVE_UP_S = 5.0
PATHS = {"qr": "/edge/qr/", "plate": "/edge/plate/", "generic": "/edge/api/v1/scans"}
CONTENT_TYPES = {
    "qr": "application/x-www-form-urlencoded",
    "plate": "application/json",
    "generic": "application/json",
}


def request_body(device: dict[str, Any], k: int, base: str) -> bytes:
    """Device ``device``'s ``k``-th scan of the load tagged ``base`` in its native format."""
    token = device["tokens"][k % len(device["tokens"])]
    kind = device["kind"]
    if kind == "qr":
        return qr_form(f"FX1R:{token}:G", device["number"])
    if kind == "plate":
        # plateid + frame time is the camera's event serial: unique per scan
        now = time.time()
        return plate_alarm(
            serialno=device["number"],
            licence=f"京B{k % 100_000:05d}",
            plate_id=k,
            sec=int(now),
        )
    scan = {
        "device_id": device["number"],
        "event_serial": f"{base}-{k}",
        "event_time": int(time.time() * 1000),
        "method": "FACE",
        "identifier": token,
        "identifier_kind": "employee_no",
        "temperature_c": 36.5,
    }
    return json.dumps(scan).encode()


def http_request(kind: str, body: bytes) -> bytes:
    head = (
        f"POST {PATHS[kind]} HTTP/1.1\r\nHost: edge\r\nContent-Type: {CONTENT_TYPES[kind]}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response with a Content-Length."""
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    keep = True
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


class Fleet:
    """The devices of one load, their schedule and what they observed."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.host: str = job["host"]
        self.port: int = job["port"]
        self.devices: list[dict[str, Any]] = job["devices"]
        self.rate: float = job["rate_per_s"]
        self.total = max(1, round(self.rate * job["duration_s"]))
        self.base = uuid.uuid4().hex[:10]
        self.latency_ms: list[float] = []
        self.behind_ms: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.fallback_seen = 0  # generic API answers say their source
        self.last_sent = 0.0

    async def _device(self, index: int, start: float) -> None:
        device = self.devices[index]
        kind = device["kind"]
        loop = asyncio.get_running_loop()
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for k in range(index, self.total, len(self.devices)):
                due = start + k / self.rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if stream is None:
                    stream = await asyncio.open_connection(self.host, self.port)
                reader, writer = stream
                payload = http_request(kind, request_body(device, k, self.base))
                sent = loop.time()
                try:
                    async with asyncio.timeout(GIVE_UP_S):
                        writer.write(payload)
                        status, body, keep = await read_response(reader)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as err:
                    self.errors[type(err).__name__] += 1
                    writer.close()
                    stream = None
                    continue
                answered = loop.time()
                self.last_sent = max(self.last_sent, sent)
                self.latency_ms.append((answered - sent) * 1000)
                self.behind_ms.append(max(0.0, (sent - due) * 1000))
                self.statuses[status] += 1
                self.by_kind[kind] += 1
                if kind == "generic" and b"edge-fallback" in body:
                    self.fallback_seen += 1
                if not keep:
                    writer.close()
                    stream = None
        finally:
            if stream is not None:
                stream[1].close()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        cpu_before = _cpu_s()
        start = loop.time() + 0.2  # every device's first due time lies ahead of its start
        wall = time.time()
        await asyncio.gather(*(self._device(i, start) for i in range(len(self.devices))))
        seconds = loop.time() - start
        # the span the scans went out in: stretched when devices wait longer than their turn
        send_seconds = max(self.last_sent - start, 0.0) + 1 / self.rate
        return {
            "offered_per_s": self.rate,
            "scheduled": self.total,
            "answered": len(self.latency_ms),
            "seconds": round(seconds, 3),
            "send_seconds": round(send_seconds, 3),
            "started_at": wall,
            "devices": len(self.devices),
            "latency_ms": [round(v, 3) for v in self.latency_ms],
            "behind_ms": [round(v, 3) for v in self.behind_ms],
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "by_kind": dict(self.by_kind),
            "errors": dict(self.errors),
            "generic_fallback_seen": self.fallback_seen,
            "cpu_s": round(_cpu_s() - cpu_before, 3),
        }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result = asyncio.run(Fleet(job).run())
    Path(job["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
