"""What ``fangxian doctor`` asks of a gate edge without starting one: whether it answers on its
port (``/healthz``: up, and connected to Kafka), and how many accepted records its outbox still
holds — read from the SQLite file read-only, never created or changed."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from fangxian.edge.service import EdgeConfig

#: an outbox whose oldest record waits longer than this is not draining
OUTBOX_STALE_S = 60.0


def edge_url(config: EdgeConfig) -> str:
    """The edge's own address as seen from this machine (a wildcard bind is reached on
    loopback)."""
    host = "127.0.0.1" if config.host in ("", "0.0.0.0") else config.host
    host = "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{host}:{config.port}"


def probe_health(url: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """``GET <url>/healthz``; raises OSError (refused, timed out) or ValueError (not the edge).

    The certificate is not verified: this reads only the edge's up/Kafka flags, on the
    machine (or network) the edge serves, where a device certificate is often self-signed."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url + "/healthz", timeout=timeout_s, context=context) as resp:
        body = json.loads(resp.read().decode())
    if not isinstance(body, dict) or "ok" not in body:
        raise ValueError("not a fangxian edge /healthz answer")
    return body


def outbox_depth(path: str | Path) -> tuple[int, float] | None:
    """(records not yet produced, age in seconds of the oldest) of the outbox at ``path``, or
    None when there is no outbox file there (the edge has not run on this machine)."""
    file = Path(path)
    if not file.is_file():
        return None
    uri = file.resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=2.0)) as db:
        n, oldest = db.execute(
            "SELECT count(*), min(created_ms) FROM outbox WHERE produced_ms IS NULL"
        ).fetchone()
    return int(n), 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
