"""The console's ASGI app (Starlette): sign-in, pages, JSON, the event stream, actions.

Every route but ``/login`` and ``/static`` needs a session (``_viewer``); every route that
names a community checks ``Viewer.can_see`` and answers 403 otherwise; an alert of a community
the viewer may not see is answered 404, as if it did not exist. POSTs need the session's CSRF
token and, when the browser sends an ``Origin``, the console's own origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from fangxian.console.actions import ActionWriter
from fangxian.console.audit import ConsoleAudit, community_scope
from fangxian.console.auth import (
    MIN_PASSWORD_CHARS,
    Credentials,
    SessionSigner,
    hash_fingerprint,
)
from fangxian.console.history import Capacity, History, audit_page, local_midnight_s, today
from fangxian.console.live import LiveState, alert_view, apply_action
from fangxian.console.nav import login_url, safe_next
from fangxian.console.roster import StaffDirectory
from fangxian.console.scope import ROLE_LABELS, Viewer
from fangxian.console.silences import SilenceFeed, silence_routes
from fangxian.core.settings import Settings
from schemas.labels import ALERT_TYPE_ZH, DECISION_ZH
from sinks.audit import (
    ALERT_ACK,
    ALERT_RESOLVE,
    ALERT_SILENCE,
    DENIED,
    ERROR,
    PASSWORD_CHANGE,
    SIGN_IN,
    SIGN_OUT,
    AuditUnavailable,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "fx_session"
LOGIN_CSRF_COOKIE = "fx_login_csrf"
HEARTBEAT_S = 15.0
MAX_FAILURES = 5
LOCKOUT_S = 300
ROUTED_WAIT_S = 3.0
AREA_CACHE_S = 60.0

PAGES = (
    ("alerts", "实时预警", "Live alerts"),
    ("decisions", "通行决定", "Gate decisions"),
    ("occupancy", "在区人数", "Occupancy"),
    ("observation", "居家观察", "Under observation"),
    ("devices", "设备状态", "Device health"),
    ("silences", "静默", "Silences"),
    ("report", "日报", "Daily report"),
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
    "base-uri 'none'"
)
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


@dataclass
class ConsoleDeps:
    """What the app works with; the server (``server.py``) or a test assembles it."""

    settings: Settings
    signer: SessionSigner
    credentials: Credentials
    directory: StaffDirectory
    state: LiveState
    history: History
    actions: ActionWriter | None = None
    silences: SilenceFeed | None = None  # alert.silences (fangxian/console/silences.py)
    audit: ConsoleAudit | None = None  # None: nothing audited (unit tests of other parts)
    capacity: Capacity = field(default_factory=lambda: Capacity({}))
    failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    background: list[Callable[[asyncio.Event], Awaitable[None]]] = field(default_factory=list)


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    env.globals.update(PAGES=PAGES, ROLE_LABELS=ROLE_LABELS, DECISION_ZH=DECISION_ZH)
    return env


def _fmt_time(ms: int | None, timezone: str, fmt: str = "%H:%M:%S") -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).strftime(fmt)


def build_app(deps: ConsoleDeps) -> SecurityHeaders:
    env = _env()
    tz = deps.settings.default_timezone
    env.filters["hms"] = lambda ms: _fmt_time(ms, tz)
    env.filters["when"] = lambda ms: _fmt_time(ms, tz, "%Y-%m-%d %H:%M:%S")
    env.filters["type_zh"] = lambda t: ALERT_TYPE_ZH.get(t, t)
    secure_always = deps.settings.console_secure_cookies

    # -- helpers ------------------------------------------------------------------------------
    def secure(request: Request) -> bool:
        return secure_always or request.url.scheme == "https"

    def viewer_of(request: Request) -> tuple[Viewer, str] | None:
        session = deps.signer.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        entry = deps.directory.get(session.staff_id)
        stored = deps.credentials.hash_of(session.staff_id)
        if entry is None or stored is None or hash_fingerprint(stored) != session.fingerprint:
            return None  # left the roster, deactivated, or the password changed
        return Viewer(entry), session.session_id

    def need_viewer(request: Request, *, page: bool) -> tuple[Viewer, str]:
        found = viewer_of(request)
        if found is None:
            if page:
                raise HTTPException(
                    303, headers={"Location": login_url(request.url.path, request.url.query)}
                )
            raise HTTPException(401, "未登录 sign in first")
        return found

    area_cache: dict[str, tuple[float, list[str]]] = {}

    async def communities_of(viewer: Viewer) -> list[str]:
        known = set(deps.directory.communities())
        known.update(a.community_id for a in deps.state.alerts.values())
        known.update(deps.state.decisions)
        known.update(deps.capacity.limits)
        if viewer.area:  # an officer: also every community with gate traffic this week
            cached = area_cache.get(viewer.area)
            if cached is None or time.monotonic() - cached[0] > AREA_CACHE_S:
                since = local_midnight_s(tz) - 7 * 86400
                found = await run_in_threadpool(
                    deps.history.communities_in_area, viewer.area, since
                )
                cached = area_cache[viewer.area] = (time.monotonic(), found)
            known.update(cached[1])
        return viewer.visible(known)

    def community_param(request: Request, viewer: Viewer) -> str:
        asked = request.query_params.get("community") or viewer.staff.community_id
        if not viewer.can_see(asked):
            raise HTTPException(403, "无权查看该社区 not your community")
        return asked

    async def page(
        request: Request, name: str, viewer: Viewer, sid: str, **context: Any
    ) -> HTMLResponse:
        html = env.get_template(f"{name}.html").render(
            viewer=viewer,
            csrf=deps.signer.csrf_token(sid),
            page_name=name,
            communities=await communities_of(viewer),
            timezone=tz,
            **context,
        )
        return HTMLResponse(html)

    async def check_post(request: Request, sid: str, token: str | None) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "跨站请求被拒绝 cross-site request refused")
        if not deps.signer.csrf_ok(sid, token or request.headers.get("x-csrf-token")):
            raise HTTPException(403, "CSRF 校验失败 CSRF token missing or wrong")

    # -- the audit log (sinks/audit.py; fangxian/console/audit.py) ----------------------------
    async def audit(request: Request, action: str, actor: str, **entry: Any) -> None:
        """One audit row, before the action; raises ``AuditUnavailable`` when it can be
        neither inserted nor spooled (the caller refuses the action)."""
        if deps.audit is not None:
            await run_in_threadpool(deps.audit.record, request, action, actor, **entry)

    async def audit_or_log(request: Request, action: str, actor: str, **entry: Any) -> None:
        """The same for what goes ahead regardless (a refusal, a sign-out): the loss is
        logged as an error, never silent."""
        try:
            await audit(request, action, actor, **entry)
        except AuditUnavailable:
            log.error("audit row LOST 审计日志丢失: %s by %s %s", action, actor, entry)

    def audit_refused() -> HTTPException:
        return HTTPException(
            503, "审计日志暂不可用，操作未执行 the audit log is unavailable: nothing was done"
        )

    # -- sign-in ------------------------------------------------------------------------------
    async def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(16)
        html = env.get_template("login.html").render(
            csrf=token, error="", next=safe_next(request.query_params.get("next"))
        )
        response = HTMLResponse(html)
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request)
        )
        return response

    async def login(request: Request) -> Response:
        form = await request.form()
        token = str(form.get("csrf", ""))
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not token or not secrets.compare_digest(token, cookie):
            raise HTTPException(403, "CSRF 校验失败 CSRF token missing or wrong")
        staff_id = str(form.get("staff_id", "")).strip()
        password = str(form.get("password", ""))
        count, since = deps.failures.get(staff_id, (0, 0.0))
        locked = count >= MAX_FAILURES and time.monotonic() - since < LOCKOUT_S
        entry = deps.directory.get(staff_id)
        password_ok = not locked and await run_in_threadpool(
            deps.credentials.check, staff_id, password
        )
        ok = password_ok and entry is not None
        if not ok:
            if not locked:
                deps.failures[staff_id] = (count + 1, time.monotonic())
            known = entry is not None or deps.credentials.hash_of(staff_id) is not None
            reason = (
                "locked"
                if locked
                else "not_in_roster"
                if password_ok
                else "wrong_password"
                if known
                else "unknown_staff"
            )
            details = {"reason": reason}
            if not known and deps.audit is not None:
                details["typed_ref"] = deps.audit.typed_ref(staff_id)
            await audit_or_log(
                request,
                SIGN_IN,
                staff_id if known else "",
                outcome=DENIED,
                scope=community_scope(entry.community_id if entry else ""),
                details=details,
            )
            html = env.get_template("login.html").render(
                csrf=token,
                next=safe_next(form.get("next")),
                error="尝试过多，请稍后再试 Too many attempts, try later"
                if locked
                else "账号或密码错误 Wrong staff id or password",
            )
            return HTMLResponse(html, status_code=401)
        assert entry is not None
        try:
            await audit(request, SIGN_IN, staff_id, scope=community_scope(entry.community_id))
        except AuditUnavailable as err:
            raise audit_refused() from err
        deps.failures.pop(staff_id, None)
        stored = deps.credentials.hash_of(staff_id) or ""
        # back to the page asked for before sign-in (an alert from an acknowledge link)
        response = RedirectResponse(safe_next(form.get("next")), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            deps.signer.issue(staff_id, hash_fingerprint(stored)),
            max_age=deps.signer.lifetime_s,
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        log.info("console sign-in 登录: %s", staff_id)
        return response

    async def logout(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        form = await request.form()
        await check_post(request, sid, str(form.get("csrf", "")))
        # signing out goes ahead even when the audit log is unreachable (never keep a session
        # open for want of a row); the loss is logged
        await audit_or_log(
            request, SIGN_OUT, viewer.staff_id, scope=community_scope(viewer.staff.community_id)
        )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse("/alerts", status_code=303)

    # -- data ---------------------------------------------------------------------------------
    async def alerts_of(communities: list[str]) -> list[dict[str, Any]]:
        start = local_midnight_s(tz)
        rows = await run_in_threadpool(deps.history.alerts_since, communities, start)
        actions = await run_in_threadpool(deps.history.actions_since, communities, start)
        for row in rows:
            deps.state.adopt(alert_view(row))
        views = {a.alert_id: a for a in deps.state.alerts.values() if a.community_id in communities}
        for action in actions:
            view = views.get(action["alert_id"])
            if view is not None:
                apply_action(view, action)
        ordered = sorted(views.values(), key=lambda a: a.event_time, reverse=True)
        return [a.to_json() for a in ordered if a.event_time >= start * 1000][:500]

    def occupancy_rows(occ: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
        out = []
        for community, figures in occ.items():
            limit = deps.capacity.limits.get(community)
            out.append(
                {
                    "community_id": community,
                    **figures,
                    "capacity": limit,
                    "exceeded": limit is not None and figures["now"] > limit,
                }
            )
        return out

    async def occupancy_of(communities: list[str]) -> list[dict[str, Any]]:
        occ = await run_in_threadpool(deps.history.occupancy, communities, local_midnight_s(tz))
        return occupancy_rows(occ)

    # -- pages --------------------------------------------------------------------------------
    async def alerts_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        community = community_param(request, viewer)
        return await page(
            request,
            "alerts",
            viewer,
            sid,
            community=community,
            alerts=await alerts_of([community]),
            occupancy=[o for o in await occupancy_of([community]) if o["exceeded"]],
        )

    async def alert_page(request: Request) -> Response:
        """One alert — where an acknowledge link leads (after sign-in, ``next=``): its
        community's alerts with this one first and marked; 404 for an alert the viewer may not
        see, as if it did not exist."""
        viewer, sid = need_viewer(request, page=True)
        alert_id = request.path_params["alert_id"]
        view = deps.state.alerts.get(alert_id)
        if view is None:
            try:
                row = await run_in_threadpool(deps.history.alert, alert_id)
            except ValueError:
                row = None
            view = deps.state.adopt(alert_view(row)) if row else None
        if view is None or not viewer.can_see(view.community_id):
            raise HTTPException(404, "没有这条预警 no such alert")
        community = view.community_id
        others = [a for a in await alerts_of([community]) if a["alert_id"] != alert_id]
        return await page(
            request,
            "alerts",
            viewer,
            sid,
            community=community,
            alerts=[view.to_json(), *others],
            occupancy=[o for o in await occupancy_of([community]) if o["exceeded"]],
            focus=alert_id,
        )

    async def decisions_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        community = community_param(request, viewer)
        start = local_midnight_s(tz)
        by_gate = await run_in_threadpool(deps.history.decisions_by_gate, community, start)
        recent = await run_in_threadpool(deps.history.recent_decisions, community, start)
        return await page(
            request,
            "decisions",
            viewer,
            sid,
            community=community,
            by_gate=by_gate,
            recent=recent,
            decision_kinds=list(DECISION_ZH),
        )

    async def occupancy_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        communities = await communities_of(viewer)
        if "community" in request.query_params:
            communities = [community_param(request, viewer)]
        return await page(
            request,
            "occupancy",
            viewer,
            sid,
            community=communities[0] if len(communities) == 1 else "",
            rows=await occupancy_of(communities),
        )

    async def observation_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        community = community_param(request, viewer)
        rows = await run_in_threadpool(deps.history.observation, community, today(tz))
        return await page(request, "observation", viewer, sid, community=community, rows=rows)

    async def devices_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        community = community_param(request, viewer)
        rows = await run_in_threadpool(deps.history.devices, community, local_midnight_s(tz))
        return await page(request, "devices", viewer, sid, community=community, rows=rows)

    def report_day(request: Request) -> dt.date:
        text = request.query_params.get("date")
        try:
            return dt.date.fromisoformat(text) if text else today(tz)
        except ValueError as err:
            raise HTTPException(400, "日期格式 YYYY-MM-DD date must be YYYY-MM-DD") from err

    def report_scope(request: Request, viewer: Viewer) -> Any:
        from sinks.reports.daily import Scope

        if request.query_params.get("county"):
            area = request.query_params["county"]
            if not viewer.is_officer or area != viewer.area:
                raise HTTPException(403, "仅限本区县街道人员 county roll-up is for its officers")
            return Scope("county", area)
        return Scope("community", community_param(request, viewer))

    async def report_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        scope = report_scope(request, viewer)
        day = report_day(request)
        query = f"{scope.kind if scope.kind == 'county' else 'community'}={scope.code}"
        return await page(
            request,
            "report",
            viewer,
            sid,
            community=scope.code if scope.kind == "community" else "",
            scope=scope,
            day=day.isoformat(),
            query=f"{query}&date={day.isoformat()}",
        )

    async def report_file(request: Request) -> Response:
        from sinks.reports.daily import build_report
        from sinks.reports.render import render_csv, render_html

        viewer, _sid = need_viewer(request, page=False)
        scope = report_scope(request, viewer)
        day = report_day(request)
        report = await run_in_threadpool(build_report, deps.history.reader, scope, day, tz)
        if request.path_params["fmt"] == "csv":
            name = f"report-{scope.code}-{day.isoformat()}.csv"
            return Response(
                "\ufeff" + render_csv(report),  # BOM: Excel opens UTF-8 Chinese correctly
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        response = HTMLResponse(render_html(report))
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response

    async def county_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        if not viewer.is_officer:
            raise HTTPException(403, "仅限街道/区县人员 for street and county officers")
        from sinks.reports.daily import FIGURES, Scope, build_report

        day = report_day(request)
        communities = await communities_of(viewer)

        def build() -> list[tuple[str, dict[str, int]]]:
            rows = [
                (
                    "合计 total",
                    build_report(
                        deps.history.reader, Scope("county", viewer.area), day, tz
                    ).figures,
                )
            ]
            for c in communities:
                rows.append(
                    (c, build_report(deps.history.reader, Scope("community", c), day, tz).figures)
                )
            return rows

        rows = await run_in_threadpool(build)
        return await page(
            request,
            "county",
            viewer,
            sid,
            community="",
            day=day.isoformat(),
            rows=rows,
            figures=FIGURES,
            area=viewer.area,
        )

    # -- JSON ---------------------------------------------------------------------------------
    async def api_alerts(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        return JSONResponse({"alerts": await alerts_of([community_param(request, viewer)])})

    async def api_decisions(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        community = community_param(request, viewer)
        start = local_midnight_s(tz)
        return JSONResponse(
            {
                "by_gate": await run_in_threadpool(
                    deps.history.decisions_by_gate, community, start
                ),
                "recent": await run_in_threadpool(deps.history.recent_decisions, community, start),
            }
        )

    async def api_occupancy(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        communities = await communities_of(viewer)
        if "community" in request.query_params:
            communities = [community_param(request, viewer)]
        return JSONResponse({"occupancy": await occupancy_of(communities)})

    async def api_observation(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        community = community_param(request, viewer)
        rows = await run_in_threadpool(deps.history.observation, community, today(tz))
        return JSONResponse({"residents": rows})

    async def api_devices(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        community = community_param(request, viewer)
        rows = await run_in_threadpool(deps.history.devices, community, local_midnight_s(tz))
        return JSONResponse({"devices": rows})

    async def api_me(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        return JSONResponse(
            {
                "staff_id": viewer.staff_id,
                "display_name": viewer.staff.display_name,
                "role": viewer.staff.role,
                "community_id": viewer.staff.community_id,
                "area": viewer.area,
                "communities": await communities_of(viewer),
            }
        )

    async def act(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=False)
        kind = request.path_params["kind"]
        if kind not in ("ack", "resolve"):
            raise HTTPException(404)
        body: dict[str, Any] = {}
        if request.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                body = dict(await request.json())
        else:
            body = dict(await request.form())
        action = ALERT_ACK if kind == "ack" else ALERT_RESOLVE
        alert_id = request.path_params["alert_id"]
        try:
            await check_post(request, sid, body.get("csrf"))
        except HTTPException:
            await audit_or_log(
                request,
                action,
                viewer.staff_id,
                outcome=DENIED,
                details={"alert_id": alert_id, "reason": "csrf_or_origin"},
            )
            raise
        view = deps.state.alerts.get(alert_id)
        if view is None:
            try:
                row = await run_in_threadpool(deps.history.alert, alert_id)
            except ValueError:
                row = None
            view = deps.state.adopt(alert_view(row)) if row else None
        if view is None or not viewer.can_see(view.community_id):
            # an alert of a community the viewer may not see is answered as if it did not
            # exist; the audit row says which it was (for whoever reads the audit)
            await audit_or_log(
                request,
                action,
                viewer.staff_id,
                outcome=DENIED,
                scope=community_scope(view.community_id if view else ""),
                details={
                    "alert_id": alert_id,
                    "reason": "no_such_alert" if view is None else "not_your_community",
                },
            )
            raise HTTPException(404, "没有这条预警 no such alert")
        note = str(body.get("note", "")).strip()
        if kind == "resolve" and not note:
            raise HTTPException(400, "请填写处置说明 a resolution needs a note")
        if deps.actions is None:
            raise HTTPException(503, "未连接 Kafka not connected")
        about = {
            "alert_id": alert_id,
            "alert_type": view.alert_type,
            # the note is free text that may name a person: only its length is kept
            **({"note_chars": str(len(note))} if note else {}),
        }
        try:  # before the request is produced: no audit row, no action
            await audit(
                request,
                action,
                viewer.staff_id,
                scope=community_scope(view.community_id),
                details=about,
            )
        except AuditUnavailable as err:
            raise audit_refused() from err
        # the dispatcher answers a request only for an alert it has taken on (ROUTED): one
        # that arrives within milliseconds of the alert would go unanswered, so wait for it
        for _ in range(int(ROUTED_WAIT_S / 0.05)):
            if view.routed:
                break
            await asyncio.sleep(0.05)
        partition = view.partition
        if partition is None:
            partition = await deps.actions.alerts_partition(view.community_id)
            view.partition = partition
        try:
            record = await deps.actions.request(kind, alert_id, viewer.staff_id, partition, note)
        except Exception as err:
            await audit_or_log(
                request,
                action,
                viewer.staff_id,
                outcome=ERROR,
                scope=community_scope(view.community_id),
                details={**about, "error": type(err).__name__},
            )
            raise HTTPException(503, "操作未送达 the request did not reach Kafka") from err
        if apply_action(view, record):
            deps.state.publish("action", view.community_id, view.to_json())
        log.info("console %s of alert %s by %s", kind, alert_id, viewer.staff_id)
        return JSONResponse({"ok": True, "alert": view.to_json(), "action_id": record["action_id"]})

    # -- the audit: my activity, the county's, changing one's password -----------------------
    def activity_of(request: Request, viewer: Viewer) -> tuple[str, int]:
        view = request.query_params.get("view", "mine")
        if view not in ("mine", "county"):
            raise HTTPException(400, "view=mine|county")
        if view == "county" and not viewer.area:
            raise HTTPException(403, "仅限街道/区县人员 for street and county officers")
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError as err:
            raise HTTPException(400, "page 须为数字 page must be a number") from err
        return view, max(1, min(number, 10_000))

    async def audit_rows(viewer: Viewer, view: str, number: int) -> Any:
        if view == "mine":
            return await run_in_threadpool(
                audit_page, deps.history.reader, actor=viewer.staff_id, page=number
            )
        staff = [
            s.staff_id for s in deps.directory.staff.values() if viewer.can_see(s.community_id)
        ]
        return await run_in_threadpool(
            audit_page, deps.history.reader, area=viewer.area, area_staff=staff, page=number
        )

    async def activity_page(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        view, number = activity_of(request, viewer)
        found = await audit_rows(viewer, view, number)
        return await page(
            request,
            "activity",
            viewer,
            sid,
            community="",
            view=view,
            area=viewer.area,
            found=found,
        )

    async def api_activity(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        view, number = activity_of(request, viewer)
        found = await audit_rows(viewer, view, number)
        return JSONResponse(
            {"view": view, "page": found.page, "has_next": found.has_next, "rows": found.rows}
        )

    async def password_form(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        return await page(
            request,
            "password",
            viewer,
            sid,
            community="",
            error="",
            done=False,
            min_chars=MIN_PASSWORD_CHARS,
        )

    async def change_password(request: Request) -> Response:
        viewer, sid = need_viewer(request, page=True)
        form = await request.form()
        await check_post(request, sid, str(form.get("csrf", "")))
        current = str(form.get("current", ""))
        new = str(form.get("new", ""))
        scope = community_scope(viewer.staff.community_id)
        error = ""
        if new != str(form.get("again", "")):
            error = "两次输入不一致 the new passwords differ"
        elif len(new) < MIN_PASSWORD_CHARS:
            error = f"新密码至少 {MIN_PASSWORD_CHARS} 个字符 {MIN_PASSWORD_CHARS}+ characters"
        elif not await run_in_threadpool(deps.credentials.check, viewer.staff_id, current):
            error = "当前密码错误 the current password is wrong"
            await audit_or_log(
                request,
                PASSWORD_CHANGE,
                viewer.staff_id,
                outcome=DENIED,
                scope=scope,
                details={"reason": "wrong_password"},
            )
        if error:
            html = env.get_template("password.html").render(
                viewer=viewer,
                csrf=deps.signer.csrf_token(sid),
                page_name="password",
                communities=await communities_of(viewer),
                timezone=tz,
                community="",
                error=error,
                done=False,
                min_chars=MIN_PASSWORD_CHARS,
            )
            return HTMLResponse(html, status_code=400)
        try:  # never the password itself: only that it changed, by whom, from where
            await audit(request, PASSWORD_CHANGE, viewer.staff_id, scope=scope)
        except AuditUnavailable as err:
            raise audit_refused() from err
        await run_in_threadpool(deps.credentials.set_password, viewer.staff_id, new)
        # the new hash ends every other session; this one goes on with a fresh cookie
        stored = deps.credentials.hash_of(viewer.staff_id) or ""
        cookie = deps.signer.issue(viewer.staff_id, hash_fingerprint(stored))
        session = deps.signer.read(cookie)
        assert session is not None
        response = await page(
            request,
            "password",
            viewer,
            session.session_id,
            community="",
            error="",
            done=True,
            min_chars=MIN_PASSWORD_CHARS,
        )
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=deps.signer.lifetime_s,
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        log.info("console password changed 修改密码: %s", viewer.staff_id)
        return response

    # -- the event stream ---------------------------------------------------------------------
    async def events(request: Request) -> Response:
        viewer, _ = need_viewer(request, page=False)
        only = request.query_params.get("community")
        if only is not None and not viewer.can_see(only):
            raise HTTPException(403, "无权查看该社区 not your community")

        def can_see(community: str) -> bool:
            return viewer.can_see(community) and (only is None or community == only)

        sub = deps.state.subscribe(can_see)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n: connected\n\n"
                while True:
                    try:
                        kind, payload = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        if sub.dropped:
                            return
                        yield b": keep-alive\n\n"
                        continue
                    data = json.dumps(payload, ensure_ascii=False)
                    yield f"event: {kind}\ndata: {data}\n\n".encode()
            finally:
                deps.state.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "staff": len(deps.directory.staff), **deps.state.counts})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"] if exc.headers else "/login", 303)
        if request.url.path.startswith("/api/") or request.url.path == "/events":
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(_as_coroutine(job(stop))) for job in deps.background
        ]
        for task in tasks:
            task.add_done_callback(_log_failure)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/alerts", alerts_page),
            Route("/alerts/{alert_id}", alert_page),
            Route("/decisions", decisions_page),
            Route("/occupancy", occupancy_page),
            Route("/observation", observation_page),
            Route("/devices", devices_page),
            Route("/report", report_page),
            Route("/report/file.{fmt:str}", report_file),
            Route("/county", county_page),
            Route("/activity", activity_page),
            Route("/account/password", password_form, methods=["GET"]),
            Route("/account/password", change_password, methods=["POST"]),
            Route("/api/me", api_me),
            Route("/api/alerts", api_alerts),
            Route("/api/decisions", api_decisions),
            Route("/api/occupancy", api_occupancy),
            Route("/api/observation", api_observation),
            Route("/api/devices", api_devices),
            Route("/api/activity", api_activity),
            Route("/api/alerts/{alert_id}/{kind}", act, methods=["POST"]),
            *silence_routes(
                deps.silences,
                need_viewer=need_viewer,
                check_post=check_post,
                page=page,
                community_param=community_param,
                audit=audit,
                audit_action=ALERT_SILENCE,
                audit_refused=audit_refused,
                audit_denied=lambda request, action, actor, **entry: audit_or_log(
                    request, action, actor, outcome=DENIED, **entry
                ),
                scope_of=community_scope,
                timezone=tz,
            ),
            Route("/events", events),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )

    return SecurityHeaders(app)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("console background task failed", exc_info=task.exception())


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


class SecurityHeaders:
    """Pure ASGI wrapper (streams pass through unbuffered): CSP, nosniff, no referrer, frames
    from this origin only, no caching of anything but static files."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers.setdefault("X-Frame-Options", "SAMEORIGIN")
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
