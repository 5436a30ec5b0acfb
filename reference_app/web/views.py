"""Dashboard routes (admins only): overview, network, escrow, live updates, reports.

Sign in with the form at /dashboard/login (sessions: web/session.py), or once with
``/dashboard?token=<access token>`` from a script. Pages are rendered on the server;
``/dashboard/events`` streams each view's re-rendered main block (SSE) and
static/dashboard.js swaps in the numbers that changed.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from ..api.deps import get_ctx
from ..context import AppContext
from ..services import admin as admin_service
from ..services.errors import DomainError, NotFound
from . import data, reports, session
from .session import Admin

HERE = Path(__file__).parent
COOKIE = session.ACCESS_COOKIE
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["num"] = lambda n: "-" if n is None else f"{int(n):,}"
router = APIRouter(prefix="/dashboard", include_in_schema=False)

PATHS = {"overview": "/dashboard", "network": "/dashboard/network", "escrow": "/dashboard/escrow"}
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
EVENT_INTERVAL_S = 3.0
# A stream ends after this long (or when its token does) and EventSource reconnects with
# the current cookie: no stream outlives its session, none holds a server shutdown for long.
STREAM_MAX_S = 25.0
RETRY_MS = 2_000


def _overview(ctx: AppContext, s) -> dict:
    return {"metrics": admin_service.metrics(ctx, s), "orders": data.recent_orders(s),
            "auctions": data.auctions(s), "reports": reports.reports(ctx),
            "runs_folder": str((reports.report_roots(ctx) or [ctx.settings.runs_dir or "runs"])[0])}


def _network(ctx: AppContext, _s) -> dict:
    return {"net": data.network(ctx)}


def _escrow(ctx: AppContext, s) -> dict:
    return {"esc": data.escrow(ctx, s)}


VIEWS = {"overview": _overview, "network": _network, "escrow": _escrow}


def render(request: Request, ctx: AppContext, view: str, admin: Admin, whole: bool = True) -> str:
    """The view's page, or (``whole=False``) only its main block, as the SSE stream sends it."""
    with ctx.db.session(write=False) as s:
        page = {**VIEWS[view](ctx, s), "view": view, "admin": admin, "request": request,
                "renew_s": max(10, ctx.settings.access_token_ttl_s // 3)}
        template = templates.get_template(f"{view}.html")
        if whole:
            return template.render(page)
        return "".join(template.blocks["main"](template.new_context(page)))


def _login_page(request: Request, reason: str = "", email: str = "", next_path: str = "/dashboard",
                status: int = 401) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"reason": reason, "email": email,
                                                              "next": _safe_next(next_path)}, status_code=status)


def _safe_next(path: str) -> str:
    return path if path in PATHS.values() else "/dashboard"


def _page(view: str):
    def page(request: Request, token: str | None = None, ctx: AppContext = Depends(get_ctx)) -> Response:
        if token:   # a script's access token: into the cookie, and out of the URL
            try:
                signed = session.with_token(ctx, token)
            except DomainError as exc:
                return _login_page(request, exc.message, next_path=PATHS[view])
            return session.set_cookies(ctx, RedirectResponse(PATHS[view], status_code=303), signed)
        try:
            signed = session.current(ctx, request)
        except DomainError as exc:
            return _login_page(request, exc.message, next_path=PATHS[view])
        return session.set_cookies(ctx, HTMLResponse(render(request, ctx, view, signed.admin)), signed)
    page.__name__ = f"{view}_page"
    return page


for _view, _path in PATHS.items():
    router.add_api_route(_path.removeprefix("/dashboard"), _page(_view), methods=["GET"], response_class=HTMLResponse)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/dashboard") -> HTMLResponse:  # noqa: A002 - the query's name
    return _login_page(request, next_path=next, status=200)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, ctx: AppContext = Depends(get_ctx)) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    email, next_path = form.get("email", ""), _safe_next(form.get("next", "/dashboard"))
    try:
        signed = await run_in_threadpool(session.login, ctx, request, email, form.get("password", ""),
                                         form.get("totp_code", "").strip())
    except DomainError as exc:
        return _login_page(request, exc.message, email=email, next_path=next_path)
    return session.set_cookies(ctx, RedirectResponse(next_path, status_code=303), signed)


@router.post("/logout")
def logout(request: Request, ctx: AppContext = Depends(get_ctx)) -> Response:
    session.logout(ctx, request.cookies.get(session.REFRESH_COOKIE))
    return session.clear_cookies(RedirectResponse("/dashboard/login", status_code=303))


@router.post("/session")
def keep_alive(request: Request, ctx: AppContext = Depends(get_ctx)) -> Response:
    """The page's script calls this every third of the token's life: the session slides."""
    try:
        signed = session.current(ctx, request)
    except DomainError as exc:
        return JSONResponse({"signed_in": False, "detail": exc.message}, status_code=401)
    return session.set_cookies(ctx, JSONResponse({"signed_in": True, "expires_in_s": int(signed.expires_at - time.time())}),
                               signed)


@router.get("/events")
async def events(request: Request, view: str = "overview", ctx: AppContext = Depends(get_ctx)) -> Response:
    """Server-sent events: ``snapshot`` with the view's main block whenever it changed."""
    if view not in VIEWS:
        raise NotFound(f"no dashboard view {view!r} (views: {', '.join(VIEWS)})")
    try:
        signed = session.current(ctx, request, may_refresh=False)   # the page's ping does the refreshing
    except DomainError as exc:
        return JSONResponse({"signed_in": False, "detail": exc.message}, status_code=401)
    token = signed.access or request.cookies[COOKIE]
    ends = time.monotonic() + STREAM_MAX_S

    async def stream():
        yield f"retry: {RETRY_MS}\n\n"
        last, seq = None, 0
        while time.monotonic() < ends:
            try:
                admin = (await run_in_threadpool(session.with_token, ctx, token)).admin
            except DomainError:
                yield "event: signed_out\ndata: {}\n\n"
                return
            html = await run_in_threadpool(render, request, ctx, view, admin, False)
            if html != last:
                seq, last = seq + 1, html
                at = datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
                yield f"event: snapshot\nid: {seq}\ndata: {json.dumps({'seq': seq, 'at': at, 'html': html})}\n\n"
            else:
                yield ": unchanged\n\n"
            await asyncio.sleep(EVENT_INTERVAL_S)

    response = StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return session.set_cookies(ctx, response, signed)


@router.get("/files/{root}/{relative:path}")
def report_file(root: int, relative: str, request: Request, ctx: AppContext = Depends(get_ctx)) -> Response:
    try:
        session.current(ctx, request, may_refresh=False)
    except DomainError as exc:
        return _login_page(request, exc.message)
    path = reports.report_file(ctx, root, relative)
    if path is None:
        raise NotFound(f"no report {relative}")
    return FileResponse(path)


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise NotFound(f"no dashboard file {name}")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])
