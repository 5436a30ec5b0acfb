"""Dashboard sessions: the login form's token pair kept in two HttpOnly cookies.

- ``escrowlab_dashboard`` holds the access token (what every page checks: admin role,
  not blocked, token version current).
- ``escrowlab_dashboard_refresh`` holds the refresh token of the same login.

Both are HttpOnly, SameSite=Strict and scoped to /dashboard (Secure in production).

Sliding: a request whose access token has less than half its life left gets a fresh
one; the page's script pings ``POST /dashboard/session`` every third of the lifetime,
so a page left open stays signed in. Once the access token has lapsed (a laptop that
slept), a page load or that ping trades the refresh token in (``accounts.refresh``,
rotation with reuse detection). Two tabs waking together would present the same
refresh token twice, and the second would look like a stolen copy and revoke every
session; so a refresh token traded in here in the last ``GRACE_S`` seconds gets the
same new pair back instead of a second trade.

``?token=<access token>`` (scripts, older bookmarks) signs in with the access cookie
alone; it slides the same way but cannot outlive a lapse.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from fastapi import Request, Response

from ..api import ratelimit
from ..context import AppContext
from ..services import accounts, tokens
from ..services.accounts import TokenPair
from ..services.errors import NotAuthenticated, PermissionDenied
from ..store.models import User

ACCESS_COOKIE = "escrowlab_dashboard"
REFRESH_COOKIE = "escrowlab_dashboard_refresh"
PATH = "/dashboard"
GRACE_S = 30.0


@dataclass(frozen=True)
class Admin:
    id: int
    email: str
    display_name: str


@dataclass(frozen=True)
class Signed:
    """Who is signed in, and the tokens to set on the response (None: keep the cookies)."""

    admin: Admin
    expires_at: int
    access: str | None = None
    refresh: str | None = None


_traded: dict[str, tuple[float, TokenPair]] = {}
_traded_lock = threading.Lock()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _trade(ctx: AppContext, refresh_token: str) -> TokenPair:
    """``accounts.refresh``, but the same refresh token within GRACE_S gets the same pair."""
    key = _digest(refresh_token)
    with _traded_lock:
        now = time.monotonic()
        for k in [k for k, (at, _) in _traded.items() if now - at > GRACE_S]:
            del _traded[k]
        if key in _traded:
            return _traded[key][1]
        with ctx.db.session() as s:
            pair = accounts.refresh(s, ctx, refresh_token)
        _traded[key] = (now, pair)
        return pair


def admin_of(ctx: AppContext, claims: dict) -> Admin:
    with ctx.db.session(write=False) as s:
        user = s.get(User, int(claims["sub"]))
        if user is None or user.blocked or claims.get("ver", 0) != user.token_version or not user.has_role("admin"):
            raise PermissionDenied("the dashboard is for admins")
        return Admin(user.id, user.email, user.display_name)


def current(ctx: AppContext, request: Request, may_refresh: bool = True) -> Signed:
    """The signed-in admin, renewing the access token when it is past half its life (and,
    with ``may_refresh``, trading the refresh token in once it has lapsed).
    Raises NotAuthenticated or PermissionDenied."""
    secret, ttl = ctx.settings.secret_key, ctx.settings.access_token_ttl_s
    access, refresh = request.cookies.get(ACCESS_COOKIE), request.cookies.get(REFRESH_COOKIE)
    claims, reason = None, "no dashboard session"
    if access:
        try:
            claims = tokens.verify(secret, access, "access")
        except NotAuthenticated as exc:
            reason = f"session ended ({exc.message})"
    new_access = new_refresh = None
    if claims is None:
        if not (refresh and may_refresh):
            raise NotAuthenticated(reason)
        pair = _trade(ctx, refresh)
        new_access, new_refresh = pair.access, pair.refresh
        claims = tokens.verify(secret, new_access, "access")
    admin = admin_of(ctx, claims)
    if new_access is None and int(claims["exp"]) - time.time() < ttl / 2:
        new_access = tokens.issue(secret, admin.id, "access", ttl, int(claims.get("ver", 0)))
        claims = tokens.verify(secret, new_access, "access")
    return Signed(admin, int(claims["exp"]), new_access, new_refresh)


def with_token(ctx: AppContext, access_token: str) -> Signed:
    """``?token=``: an access token handed in by a script; it becomes the access cookie."""
    claims = tokens.verify(ctx.settings.secret_key, access_token, "access")
    return Signed(admin_of(ctx, claims), int(claims["exp"]), access_token, None)


def login(ctx: AppContext, request: Request, email: str, password: str, totp_code: str) -> Signed:
    """The login form, through the same account service (and rate limits) as ``POST /auth/login``."""
    address = ratelimit.client_address(request)
    ratelimit.hit(request, "login_address", address)
    ratelimit.hit(request, "login_account", f"{address} {email.strip().lower()}")
    if totp_code:
        ratelimit.hit(request, "totp", email.strip().lower())
    with ctx.db.session() as s:
        pair = accounts.login(s, ctx, email, password, totp_code or None)
    claims = tokens.verify(ctx.settings.secret_key, pair.access, "access")
    try:
        admin = admin_of(ctx, claims)
    except PermissionDenied:
        logout(ctx, pair.refresh)   # a valid login, but not for here: leave no session behind
        raise
    return Signed(admin, int(claims["exp"]), pair.access, pair.refresh)


def logout(ctx: AppContext, refresh_token: str | None) -> None:
    if refresh_token:
        with ctx.db.session() as s:
            accounts.end_session(s, ctx, refresh_token)


def set_cookies(ctx: AppContext, response: Response, signed: Signed) -> Response:
    secure = ctx.settings.environment == "production"
    if signed.access:
        response.set_cookie(ACCESS_COOKIE, signed.access, max_age=ctx.settings.access_token_ttl_s, httponly=True,
                            samesite="strict", secure=secure, path=PATH)
    if signed.refresh:
        response.set_cookie(REFRESH_COOKIE, signed.refresh, max_age=ctx.settings.refresh_token_ttl_s,
                            httponly=True, samesite="strict", secure=secure, path=PATH)
    return response


def clear_cookies(response: Response) -> Response:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path=PATH)
    return response
