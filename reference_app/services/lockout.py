"""Failed-credential counting shared by passwords and TOTP codes.

Wrong passwords and wrong codes count against one budget, so an attacker who
knows the password cannot guess codes faster than one who does not.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import NoReturn

from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.models import User
from .errors import DomainError, LockedOut, NotAuthenticated


def _now() -> datetime:
    return datetime.now(timezone.utc)


def lock_row(session: Session, user: User) -> None:
    """Re-read the user under a row lock before counting, so concurrent guesses cannot
    each see the same count (SQLite already serialises writers with BEGIN IMMEDIATE)."""
    session.refresh(user, with_for_update=True)


def ensure_not_locked(user: User) -> None:
    """Used before any credential check: a locked account checks nothing, right or wrong."""
    if user.locked_until is None:
        return
    remaining = (user.locked_until - _now()).total_seconds()
    if remaining > 0:
        raise _locked(math.ceil(remaining))


def record_failure(session: Session, ctx: AppContext, user: User, error: DomainError) -> NoReturn:
    """Count one wrong password or code, lock the account at the limit, and raise.

    Commits here because the request's own transaction rolls back when the error
    propagates, and a rolled-back count would make guessing free.
    """
    user.auth_failures = (user.auth_failures or 0) + 1
    if user.auth_failures >= ctx.settings.totp_max_failures:
        user.auth_failures = 0
        user.locked_until = _now() + timedelta(seconds=ctx.settings.lockout_s)
        session.commit()
        raise _locked(ctx.settings.lockout_s)
    session.commit()
    raise error


def clear_failures(user: User) -> None:
    user.auth_failures = 0
    user.locked_until = None


def _locked(retry_after_s: int) -> LockedOut:
    return LockedOut(f"too many failed attempts: try again in {retry_after_s} s", retry_after_s=retry_after_s)


def wrong_credentials() -> NotAuthenticated:
    """One message for an unknown email and a wrong password, so login reveals no accounts."""
    return NotAuthenticated("wrong email or password")
