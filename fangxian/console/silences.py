"""Silences from the console: who may silence (``may_silence``), the console's copy of
``alert.silences`` (``SilenceFeed``: followed from the beginning without a group, like the
staff directory; new silences produced with acks=all) and the routes — the page ``/silences``
(a form and the list, with an expire button per silence; plain HTML forms, no script needed)
and the JSON ``/api/silences`` (list, create, expire).

Who may silence: staff whose role is in ``SILENCE_ROLES`` (社区工作人员 community staff, 街道
street office), for the communities they may see (``Viewer.can_see``: their own; an officer's
whole county). Anyone else gets 403 and the form is not shown to them; every silence still shows
to everyone who may see its community. The dispatcher does the muting
(``streams/dispatch/silences.py``); what it mutes is SILENCED in ``alert.actions``, so those
alerts stay on the live page, marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from fangxian.console.scope import Viewer
from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent, contract
from schemas.topics import record_key
from streams.dispatch.silences import (
    Silence,
    SilenceBook,
    SilenceInvalid,
    expire,
    new_silence,
    parse_duration_s,
    split_values,
)

log = logging.getLogger(__name__)

RECORD: Final = "Silence"
#: roles that may create and expire silences (the StaffRole symbols)
SILENCE_ROLES: Final = frozenset({"COMMUNITY_STAFF", "STREET_OFFICE"})
DURATIONS: Final = (("1h", "1 小时"), ("4h", "4 小时"), ("12h", "12 小时"), ("1d", "1 天"),
                    ("3d", "3 天"), ("7d", "7 天"))  # fmt: skip


def may_silence(viewer: Viewer, community_id: str) -> bool:
    """Whether ``viewer`` may create or expire a silence in ``community_id``."""
    return viewer.staff.role in SILENCE_ROLES and viewer.can_see(community_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SilenceFeed:
    """The console's ``SilenceBook``, followed from ``alert.silences``, and the producer of new
    and expired silences."""

    def __init__(self, settings: Settings, book: SilenceBook | None = None) -> None:
        self._s = settings
        self.book = book if book is not None else SilenceBook()
        self.loaded = asyncio.Event()
        self._codec = Codec()
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            acks="all",
            linger_ms=0,
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def put(self, silence: Silence) -> None:
        """Produce ``silence`` (the broker has it when this returns) and hold it at once."""
        if self._producer is None:
            raise RuntimeError("SilenceFeed.start() first")
        record = silence.to_record()
        await self._producer.send_and_wait(
            self._s.topics.silences,
            self._codec.encode(RECORD, record),
            key=record_key(RECORD, record),
        )
        self.book.apply(silence.silence_id, record)

    async def follow(self, stop: asyncio.Event) -> None:
        """Read ``alert.silences`` to its end (then ``loaded`` is set) and keep following."""
        from fangxian.console.roster import topic_partitions

        topic = self._s.topics.silences
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            bootstrap_servers=self._s.kafka_bootstrap,
            **kafka_client_kwargs(self._s, "aiokafka"),
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(topic, p)
                for p in sorted(await topic_partitions(consumer, topic, self._s))
            ]
            consumer.assign(tps)
            if tps:
                await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps) if tps else {}
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for messages in batches.values():
                    for msg in messages:
                        self._take(msg.key, msg.value)
                if not self.loaded.is_set():
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= end[tp] for tp in tps):
                        self.loaded.set()
                        log.info("silences loaded 静默: %d", len(self.book))
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        silence_id = key.decode() if key else ""
        if value is None:
            self.book.apply(silence_id, None)
            return
        try:
            self.book.apply(silence_id, self._codec.decode(RECORD, value))
        except InvalidEvent as err:
            log.error("skipping undecodable silence %s: %s", silence_id, err)


# -- routes ----------------------------------------------------------------------------------
NeedViewer = Callable[..., tuple[Viewer, str]]
CheckPost = Callable[[Request, str, str | None], Awaitable[None]]
Page = Callable[..., Awaitable[Response]]
CommunityParam = Callable[[Request, Viewer], str]
#: ``audit(request, action, actor, scope=..., details=...)``: one audit row before the
#: silence is written; raises when the row can be neither written nor spooled
Audit = Callable[..., Awaitable[None]]


async def _body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError as err:
            raise HTTPException(400, "JSON 无效 invalid JSON") from err
        return dict(data) if isinstance(data, dict) else {}
    form = await request.form()
    return {k: (form.getlist(k) if k == "types" else form.get(k)) for k in form}


def silence_routes(
    feed: SilenceFeed | None,
    *,
    need_viewer: NeedViewer,
    check_post: CheckPost,
    page: Page,
    community_param: CommunityParam,
    audit: Audit | None = None,
    audit_action: str = "alert_silence",
    audit_refused: Callable[[], HTTPException] | None = None,
    audit_denied: Audit | None = None,
    scope_of: Callable[[str], str] = lambda community: community,
    timezone: str = "Asia/Shanghai",
    clock_ms: Callable[[], int] = _now_ms,
) -> list[Route]:
    """The silence routes of the console app (``build_app`` adds them)."""

    def need_feed() -> SilenceFeed:
        if feed is None:
            raise HTTPException(503, "未连接 Kafka not connected")
        return feed

    def listing(community: str) -> list[dict[str, Any]]:
        if feed is None:
            return []
        now = clock_ms()
        zone = ZoneInfo(timezone)

        def local(ms: int) -> str:
            return dt.datetime.fromtimestamp(ms / 1000, zone).strftime("%m-%d %H:%M")

        return [
            {**s.to_json(now), "from_local": local(s.starts_at), "until_local": local(s.ends_at)}
            for s in feed.book.of_communities([community], now)
        ]

    async def write(request: Request, viewer: Viewer, silence: Silence, what: str) -> None:
        if audit is not None:
            try:
                await audit(
                    request,
                    audit_action,
                    viewer.staff_id,
                    scope=scope_of(silence.community_id),
                    details={
                        "what": what,
                        "silence_id": silence.silence_id,
                        "matchers": silence.matchers()[:300],
                        "ends_at": str(silence.ends_at),
                    },
                )
            except HTTPException:
                raise
            except Exception as err:  # the audit log took nothing: nothing is done
                if audit_refused is not None:
                    raise audit_refused() from err
                raise
        try:
            await need_feed().put(silence)
        except HTTPException:
            raise
        except Exception as err:
            log.error("silence %s not written: %r", silence.silence_id, err)
            raise HTTPException(503, "静默未送达 the silence did not reach Kafka") from err
        log.info(
            "console silence %s %s in %s by %s: %s until %d",
            what,
            silence.silence_id,
            silence.community_id,
            viewer.staff_id,
            silence.matchers(),
            silence.ends_at,
        )

    async def refuse(
        request: Request, viewer: Viewer, community: str, reason: str, error: HTTPException
    ) -> HTTPException:
        """``error``, once a refused attempt is in the audit log (a lost row is logged)."""
        if audit_denied is not None:
            await audit_denied(
                request,
                audit_action,
                viewer.staff_id,
                scope=scope_of(community),
                details={"reason": reason},
            )
        return error

    async def create(request: Request, viewer: Viewer, body: dict[str, Any]) -> Silence:
        community = str(body.get("community") or viewer.staff.community_id)
        if not viewer.can_see(community):
            raise await refuse(
                request,
                viewer,
                community,
                "not_your_community",
                HTTPException(403, "无权操作该社区 not your community"),
            )
        if not may_silence(viewer, community):
            raise await refuse(
                request,
                viewer,
                community,
                "role_may_not_silence",
                HTTPException(403, "仅社区工作人员与街道人员可设置静默 your role may not silence"),
            )
        try:
            silence = new_silence(
                community_id=community,
                gate_ids=split_values(body.get("gates") or ""),
                device_ids=split_values(body.get("devices") or ""),
                alert_types=split_values(body.get("types") or ""),
                duration_s=parse_duration_s(str(body.get("duration") or "")),
                comment=str(body.get("reason") or ""),
                created_by=viewer.staff_id,
                now_ms=clock_ms(),
                via="console",
            )
        except SilenceInvalid as err:
            raise HTTPException(400, f"{err.message_zh} {err.message_en}") from err
        await write(request, viewer, silence, "create")
        return silence

    async def end(request: Request, viewer: Viewer, silence_id: str) -> Silence:
        current = need_feed().book.silences.get(silence_id)
        if current is None or not viewer.can_see(current.community_id):
            raise await refuse(
                request,
                viewer,
                current.community_id if current else "",
                "no_such_silence" if current is None else "not_your_community",
                HTTPException(404, "没有这条静默 no such silence"),
            )
        if not may_silence(viewer, current.community_id):
            raise await refuse(
                request,
                viewer,
                current.community_id,
                "role_may_not_silence",
                HTTPException(403, "仅社区工作人员与街道人员可解除静默 your role may not end it"),
            )
        try:
            ended = expire(current, viewer.staff_id, clock_ms())
        except SilenceInvalid as err:
            raise HTTPException(409, f"{err.message_zh} {err.message_en}") from err
        await write(request, viewer, ended, "expire")
        return ended

    # -- the page and its forms ---------------------------------------------------------------
    async def silences_page(request: Request, error: str = "", status: int = 200) -> Response:
        viewer, sid = need_viewer(request, page=True)
        community = community_param(request, viewer)
        response = await page(
            request,
            "silences",
            viewer,
            sid,
            community=community,
            silences=listing(community),
            may_silence=may_silence(viewer, community),
            alert_types=contract.ALERT_TYPES,
            durations=DURATIONS,
            error=error,
            now_ms=clock_ms(),
        )
        response.status_code = status
        return response

    async def form_create(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        body = await _body(request)
        await check_post(request, sid, body.get("csrf"))
        try:
            silence = await create(request, viewer, body)
        except HTTPException as err:
            if err.status_code in (400, 403):
                return await silences_page(request, str(err.detail), err.status_code)
            raise
        return RedirectResponse(f"/silences?community={silence.community_id}", status_code=303)

    async def form_expire(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        body = await _body(request)
        await check_post(request, sid, body.get("csrf"))
        ended = await end(request, viewer, request.path_params["silence_id"])
        return RedirectResponse(f"/silences?community={ended.community_id}", status_code=303)

    # -- JSON ---------------------------------------------------------------------------------
    async def api_list(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        community = community_param(request, viewer)
        return JSONResponse(
            {
                "community_id": community,
                "may_silence": may_silence(viewer, community),
                "silences": listing(community),
            }
        )

    async def api_create(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=False)
        body = await _body(request)
        await check_post(request, sid, body.get("csrf"))
        silence = await create(request, viewer, body)
        return JSONResponse({"ok": True, "silence": silence.to_json(clock_ms())}, status_code=201)

    async def api_expire(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=False)
        body = await _body(request)
        await check_post(request, sid, body.get("csrf"))
        ended = await end(request, viewer, request.path_params["silence_id"])
        return JSONResponse({"ok": True, "silence": ended.to_json(clock_ms())})

    async def page_get(request: Request) -> Response:
        return await silences_page(request)

    return [
        Route("/silences", page_get, methods=["GET"]),
        Route("/silences", form_create, methods=["POST"]),
        Route("/silences/{silence_id}/expire", form_expire, methods=["POST"]),
        Route("/api/silences", api_list, methods=["GET"]),
        Route("/api/silences", api_create, methods=["POST"]),
        Route("/api/silences/{silence_id}/expire", api_expire, methods=["POST"]),
    ]
