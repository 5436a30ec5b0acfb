"""Second factor: time-based one-time codes (RFC 6238) through pyotp.

The seed is stored sealed by ``ctx.box``; enrolment stores it without enabling
it, so a user who never proves they can read codes cannot lock themselves out.
"""

from __future__ import annotations

from typing import NamedTuple

import pyotp
from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.models import User
from . import lockout
from .errors import Conflict, DomainError, ValidationFailed

ISSUER = "escrowlab"
# One step either side tolerates a phone clock that is up to 30 s off.
VALID_WINDOW = 1


class Enrolment(NamedTuple):
    secret: str
    otpauth_uri: str


def totp_enrol(ctx: AppContext, user: User) -> Enrolment:
    """Start (or restart) enrolment: a fresh seed, stored but not enabled until verified."""
    if user.totp_enabled:
        raise Conflict("two-factor authentication is already enabled: disable it before enrolling again")
    secret = pyotp.random_base32()
    user.totp_secret_enc = ctx.box.seal(secret.encode())
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return Enrolment(secret=secret, otpauth_uri=uri)


def totp_verify(session: Session, ctx: AppContext, user: User, code: str) -> None:
    """Enable two-factor authentication once the user shows a valid code."""
    if user.totp_enabled:
        raise Conflict("two-factor authentication is already enabled")
    if user.totp_secret_enc is None:
        raise Conflict("no enrolment to verify: POST /auth/totp/enrol first")
    check_code(session, ctx, user, code, _wrong_code())
    user.totp_enabled = True


def totp_disable(session: Session, ctx: AppContext, user: User, code: str) -> None:
    """Turn two-factor authentication off; a current code is needed, so a stolen token is not enough."""
    if not user.totp_enabled:
        raise Conflict("two-factor authentication is not enabled")
    check_code(session, ctx, user, code, _wrong_code())
    user.totp_enabled = False
    user.totp_secret_enc = None


def check_code(session: Session, ctx: AppContext, user: User, code: str, wrong: DomainError) -> None:
    """Accept a valid code, or count a failure (shared with passwords) and raise ``wrong``."""
    lockout.lock_row(session, user)
    lockout.ensure_not_locked(user)
    secret = ctx.box.open(user.totp_secret_enc).decode()
    if not pyotp.TOTP(secret).verify(code, valid_window=VALID_WINDOW):
        lockout.record_failure(session, ctx, user, wrong)
    lockout.clear_failures(user)


def _wrong_code() -> ValidationFailed:
    # Signed in already: a 401 here would wrongly suggest the access token is bad.
    return ValidationFailed("wrong two-factor code", field="code")
