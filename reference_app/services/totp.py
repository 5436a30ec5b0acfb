"""Second factor: time-based one-time codes (RFC 6238) through pyotp.

The seed is stored sealed by ``ctx.box``; enrolment stores it without enabling
it, so a user who never proves they can read codes cannot lock themselves out.
A code counts once (RFC 6238, section 5.2): the time step of the last accepted
code is stored, and a code of that step or an earlier one is refused.
"""

from __future__ import annotations

import time
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
    user.totp_last_step = None  # a new seed: its codes have never been used
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
    step = matching_step(ctx.box.open(user.totp_secret_enc).decode(), code)
    if step is None:
        lockout.record_failure(session, ctx, user, wrong)
    if user.totp_last_step is not None and step <= user.totp_last_step:
        # Counted like a wrong code: a replayed code is what a shoulder-surfer or a phisher sends.
        lockout.record_failure(session, ctx, user, type(wrong)(
            "this two-factor code was already used: wait for the next one", **wrong.extra))
    user.totp_last_step = step
    lockout.clear_failures(user)


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step (within VALID_WINDOW of now) whose code is ``code``, or None."""
    totp = pyotp.TOTP(secret)
    now = int((time.time() if at is None else at) // totp.interval)
    matches = [step for step in range(now - VALID_WINDOW, now + VALID_WINDOW + 1)
               if pyotp.utils.strings_equal(str(code), totp.generate_otp(step))]
    return max(matches, default=None)


def _wrong_code() -> ValidationFailed:
    # Signed in already: a 401 here would wrongly suggest the access token is bad.
    return ValidationFailed("wrong two-factor code", field="code")
