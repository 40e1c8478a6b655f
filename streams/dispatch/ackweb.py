"""The acknowledge endpoint: ``GET /ack`` and ``GET /resolve`` with a signed link's query.

A valid link becomes an ``ACK_REQUESTED`` / ``RESOLVE_REQUESTED`` record in the
``alert.actions`` partition named in the link; the dispatcher that holds the alert turns it
into ACKNOWLEDGED / RESOLVED (which stops escalation). The page answers in Chinese and English.
Bad or expired links get 403 / 410 and write nothing to ``alert.actions``. ``GET /healthz``
for probes.

With an ``AuditTrail`` every opened link leaves an ``audit_log`` row (``alert_ack`` /
``alert_resolve``; who — the link's staff id, ``unknown`` for a forged link —, the alert,
``acklink@<client address>``, the user agent, the outcome), written *before* the request is
produced: a row that can be neither inserted nor spooled answers 503 and nothing is done."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from sinks.audit import (
    ALERT_ACK,
    ALERT_RESOLVE,
    DENIED,
    ERROR,
    OK,
    AuditEntry,
    AuditTrail,
    AuditUnavailable,
)
from streams.dispatch.acklink import AckSigner, LinkExpired, LinkInvalid
from streams.dispatch.machine import request_record

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any], int], Awaitable[None]]

AUDIT_ACTION = {"ACK_REQUESTED": ALERT_ACK, "RESOLVE_REQUESTED": ALERT_RESOLVE}
USER_AGENT_MAX_CHARS = 200
# what a forged link's staff id may look like to be kept in its audit row (anything else —
# a phone number, free text — is not kept)
_STAFF_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ALERT_ID = re.compile(r"[0-9A-Za-z-]{1,64}")

PAGE = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<body style="font-family:sans-serif;margin:1.2em"><h2>{title}</h2><p>{body}</p>{link}
</body></html>"""
#: the way on to the console: the alert's page there (sign-in first, which comes back to it)
CONSOLE_LINK = """<p><a id="console" href="{url}" style="display:inline-block;min-height:44px;\
line-height:44px;padding:0 1.2em;background:#1f6391;color:#fff;border-radius:6px;\
text-decoration:none">在值班台查看 Open it in the console</a></p>"""


def console_link(console_url: str, alert_id: str) -> str:
    """The button to the alert's console page ("" when no console URL is set)."""
    if not console_url:
        return ""
    url = f"{console_url.rstrip('/')}/alerts/{quote(alert_id, safe='')}"
    return CONSOLE_LINK.format(url=html.escape(url))


def _page(status: int, title: str, body: str, link: str = "") -> web.Response:
    text = PAGE.format(title=html.escape(title), body=html.escape(body), link=link)
    return web.Response(status=status, text=text, content_type="text/html")


def _kept(pattern: re.Pattern[str], text: str) -> str:
    return text if pattern.fullmatch(text) else ""


def ack_app(
    signer: AckSigner,
    publish: Publish,
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    console_url: str = "",
    audit: AuditTrail | None = None,
) -> web.Application:
    async def write_audit(
        request: web.Request, kind: str, actor: str, outcome: str, **details: str
    ) -> None:
        if audit is None:
            return
        entry = AuditEntry(
            actor=actor or "unknown",
            action=AUDIT_ACTION[kind],
            origin=f"acklink@{request.remote or '-'}",
            details={
                "via": "link",
                "ua": request.headers.get("User-Agent", "")[:USER_AGENT_MAX_CHARS],
                **details,
            },
            outcome=outcome,
        )
        await asyncio.get_running_loop().run_in_executor(None, audit.record, entry)

    async def audit_or_log(
        request: web.Request, kind: str, actor: str, outcome: str, **details: str
    ) -> None:
        try:
            await write_audit(request, kind, actor, outcome, **details)
        except AuditUnavailable:
            log.error("audit row LOST 审计日志丢失: %s by %s %s %s", kind, actor, outcome, details)

    async def handle(request: web.Request, kind: str, done_zh: str, done_en: str) -> web.Response:
        now = clock_ms()
        query = dict(request.query)
        claimed_alert = _kept(_ALERT_ID, query.get("a", ""))
        try:
            claim = signer.verify(query, now)
        except LinkExpired:
            # the signature held: the staff id is the one the link was made for
            await audit_or_log(
                request,
                kind,
                query.get("s", ""),
                DENIED,
                alert_id=claimed_alert,
                reason="link_expired",
            )
            return _page(
                410,
                "链接已过期 Link expired",
                "请在群里回复或联系值班负责人。 Reply in the group or call the duty lead.",
            )
        except LinkInvalid:
            await audit_or_log(
                request,
                kind,
                "",
                DENIED,
                alert_id=claimed_alert,
                claimed_staff=_kept(_STAFF_ID, query.get("s", "")),
                reason="bad_signature",
            )
            return _page(403, "链接无效 Invalid link", "签名不符。 The signature does not match.")
        try:  # before the request is produced: no audit row, no acknowledgement
            await write_audit(request, kind, claim.staff_id, OK, alert_id=claim.alert_id)
        except AuditUnavailable:
            return _page(
                503,
                "暂时无法确认 Try again shortly",
                "审计日志暂不可用，本次未确认。 The audit log is unavailable: nothing was done.",
            )
        record = request_record(kind, claim.alert_id, claim.staff_id, claim.partition, now)
        try:
            await publish(record, claim.partition)
        except Exception as err:
            await audit_or_log(
                request,
                kind,
                claim.staff_id,
                ERROR,
                alert_id=claim.alert_id,
                error=type(err).__name__,
            )
            raise
        log.info("%s for alert %s by %s", kind, claim.alert_id, claim.staff_id)
        return _page(
            200,
            f"{done_zh} {done_en}",
            f"预警 alert {claim.alert_id}",
            console_link(console_url, claim.alert_id),
        )

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
