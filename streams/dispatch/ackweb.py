"""The acknowledge endpoint: ``GET /ack`` and ``GET /resolve`` with a signed link's query.

A valid link becomes an ``ACK_REQUESTED`` / ``RESOLVE_REQUESTED`` record in the
``alert.actions`` partition named in the link; the dispatcher that holds the alert turns it
into ACKNOWLEDGED / RESOLVED (which stops escalation). The page answers in Chinese and English.
Bad or expired links get 403 / 410 and write nothing. ``GET /healthz`` for probes."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streams.dispatch.acklink import AckSigner, LinkExpired, LinkInvalid
from streams.dispatch.machine import request_record

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any], int], Awaitable[None]]

PAGE = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>{title}</title>
<body style="font-family:sans-serif;margin:2em"><h2>{title}</h2><p>{body}</p></body></html>"""


def _page(status: int, title: str, body: str) -> web.Response:
    text = PAGE.format(title=html.escape(title), body=html.escape(body))
    return web.Response(status=status, text=text, content_type="text/html")


def ack_app(
    signer: AckSigner,
    publish: Publish,
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> web.Application:
    async def handle(request: web.Request, kind: str, done_zh: str, done_en: str) -> web.Response:
        now = clock_ms()
        try:
            claim = signer.verify(dict(request.query), now)
        except LinkExpired:
            return _page(
                410,
                "链接已过期 Link expired",
                "请在群里回复或联系值班负责人。 Reply in the group or call the duty lead.",
            )
        except LinkInvalid:
            return _page(403, "链接无效 Invalid link", "签名不符。 The signature does not match.")
        record = request_record(kind, claim.alert_id, claim.staff_id, claim.partition, now)
        await publish(record, claim.partition)
        log.info("%s for alert %s by %s", kind, claim.alert_id, claim.staff_id)
        return _page(200, f"{done_zh} {done_en}", f"预警 alert {claim.alert_id}")

    async def ack(request: web.Request) -> web.Response:
        return await handle(request, "ACK_REQUESTED", "已确认收到", "Acknowledged")

    async def resolve(request: web.Request) -> web.Response:
        return await handle(request, "RESOLVE_REQUESTED", "已处置完毕", "Resolved")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/ack", ack)
    app.router.add_get("/resolve", resolve)
    app.router.add_get("/healthz", healthz)
    return app
