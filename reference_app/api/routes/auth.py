"""Registration, login, token refresh and revocation, and two-factor enrolment."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import accounts
from ...store.models import User
from .. import ratelimit
from ..routing import Route
from ..deps import anonymous_write, current_user, get_ctx, DbSession
from ..schemas.accounts import LoginIn, RefreshIn, RegisterIn, TokensOut, TotpCodeIn, TotpEnrolOut, UserOut

router = APIRouter(route_class=Route, prefix="/auth", tags=["auth"])


def _limit_login(request: Request, email: str, totp_code: str | None) -> None:
    address = ratelimit.client_address(request)
    ratelimit.hit(request, "login_address", address)
    ratelimit.hit(request, "login_account", f"{address} {email.strip().lower()}")
    if totp_code:
        ratelimit.hit(request, "totp", email.strip().lower())


@router.post("/register", status_code=status.HTTP_201_CREATED, dependencies=[Depends(anonymous_write)])
def register(body: RegisterIn, ctx: AppContext = Depends(get_ctx),
             session: Session = DbSession) -> UserOut:
    """Create an account as buyer, seller and/or courier (arbiter and admin come from an admin)."""
    user = accounts.register(session, ctx, body.email, body.password, body.display_name, body.roles)
    return UserOut.of(user)


@router.post("/login")
def login(body: LoginIn, request: Request, ctx: AppContext = Depends(get_ctx),
          session: Session = DbSession) -> TokensOut:
    """Password (plus ``totp_code`` when two-factor is on) for an access and a refresh token."""
    _limit_login(request, body.email, body.totp_code)
    pair = accounts.login(session, ctx, body.email, body.password, body.totp_code)
    return TokensOut.of(pair, ctx.settings.access_token_ttl_s)


@router.post("/refresh")
def refresh(body: RefreshIn, request: Request, ctx: AppContext = Depends(get_ctx),
            session: Session = DbSession) -> TokensOut:
    ratelimit.hit(request, "refresh", ratelimit.client_address(request))
    pair = accounts.refresh(session, ctx, body.refresh_token)
    return TokensOut.of(pair, ctx.settings.access_token_ttl_s)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
def logout_all(user: User = Depends(current_user)) -> None:
    """Revoke every token of this account, on every device."""
    accounts.logout_all(user)


@router.post("/totp/enrol")
def totp_enrol(user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx)) -> TotpEnrolOut:
    """A new TOTP seed; two-factor stays off until ``/auth/totp/verify`` accepts a code."""
    enrolment = accounts.totp_enrol(ctx, user)
    return TotpEnrolOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post("/totp/verify", status_code=status.HTTP_204_NO_CONTENT)
def totp_verify(body: TotpCodeIn, request: Request, user: User = Depends(current_user),
                ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> None:
    ratelimit.hit(request, "totp", user.email)
    accounts.totp_verify(session, ctx, user, body.code)


@router.post("/totp/disable", status_code=status.HTTP_204_NO_CONTENT)
def totp_disable(body: TotpCodeIn, request: Request, user: User = Depends(current_user),
                 ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> None:
    ratelimit.hit(request, "totp", user.email)
    accounts.totp_disable(session, ctx, user, body.code)
