"""Dashboard routes (admins only). Sign in once with ``/dashboard?token=<access token>``:
the token moves into an HttpOnly, SameSite=Strict cookie scoped to /dashboard and the
URL is cleaned by a redirect; every page then checks the cookie's token and the admin role."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..api.deps import get_ctx
from ..context import AppContext
from ..services import admin, tokens
from ..services.errors import DomainError, NotFound, PermissionDenied
from ..store.models import User
from . import data

HERE = Path(__file__).parent
COOKIE = "escrowlab_dashboard"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _admin(ctx: AppContext, token: str | None) -> User:
    if not token:
        raise PermissionDenied("no dashboard session")
    claims = tokens.verify(ctx.settings.secret_key, token, "access")
    with ctx.db.session(write=False) as s:
        user = s.get(User, int(claims["sub"]))
        if user is None or user.blocked or claims.get("ver", 0) != user.token_version or not user.has_role("admin"):
            raise PermissionDenied("the dashboard is for admins")
        return user


def _denied(request: Request, reason: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"reason": reason}, status_code=401)


@router.get("", response_class=HTMLResponse)
def index(request: Request, token: str | None = None, ctx: AppContext = Depends(get_ctx)) -> Response:
    if token:
        try:
            _admin(ctx, token)
        except DomainError as exc:
            return _denied(request, exc.message)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(COOKIE, token, max_age=ctx.settings.access_token_ttl_s, httponly=True,
                            samesite="strict", secure=ctx.settings.environment == "production", path="/dashboard")
        return response
    try:
        user = _admin(ctx, request.cookies.get(COOKIE))
    except DomainError as exc:
        return _denied(request, exc.message)
    with ctx.db.session(write=False) as s:
        page = {"user": user, "cluster": data.cluster(ctx), "metrics": admin.metrics(ctx, s),
                "orders": data.orders(s), "auctions": data.auctions(s), "reports": data.reports(ctx)}
        return templates.TemplateResponse(request, "index.html", page)


@router.get("/files/{root}/{relative:path}")
def report_file(root: int, relative: str, request: Request, ctx: AppContext = Depends(get_ctx)) -> Response:
    try:
        _admin(ctx, request.cookies.get(COOKIE))
    except DomainError as exc:
        return _denied(request, exc.message)
    path = data.report_file(ctx, root, relative)
    if path is None:
        raise NotFound(f"no report {relative}")
    return FileResponse(path)


@router.get("/static/dashboard.css")
def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "dashboard.css", media_type="text/css")


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/dashboard", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response
