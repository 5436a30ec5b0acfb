"""Account rules: registration, login with lockout and 2FA, tokens, profile,
payout-node binding and the admin's role and block switches.

Secrets (address, TOTP seed, payout macaroon and certificate) are sealed with
``ctx.box`` before they reach the database. Nothing here speaks HTTP.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


from ..context import AppContext
from ..store.db import Prepared
from ..store.models import RefreshFamily, User
from . import lockout, node_credentials, tokens
from escrow_protocol.webhook import address_hash
from .errors import Conflict, NotAuthenticated, NotFound, PermissionDenied, TwoFactorRequired, ValidationFailed
from .totp import check_code
# Re-exported: routes see one accounts API, while the TOTP rules keep their own module.
from .totp import totp_disable, totp_enrol, totp_verify  # noqa: F401

ROLES = ("buyer", "seller", "courier", "arbiter", "admin")
SELF_SERVICE_ROLES = frozenset({"buyer", "seller", "courier"})
MIN_PASSWORD_LEN = 10
# argon2 cost grows with input length; this stops one request from burning a core.
MAX_PASSWORD_LEN = 1024
MAX_DISPLAY_NAME_LEN = 80
MAX_ADDRESS_LEN = 500

_hasher = PasswordHasher()
# "light": argon2 at its cheapest, for harness runs whose dozens of short-lived apps each
# register and log in a handful of parties (about 0.2 CPU-seconds a hash at the standard
# cost: the largest part of a scenario's CPU). Settings refuse it in production.
_HASHERS = {"standard": _hasher, "light": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)}


def use_password_hashing(kind: str) -> None:
    """Hash and verify passwords at the cost the app's settings name (``password_hashing``)."""
    global _hasher
    if _HASHERS[kind] is not _hasher:
        _hasher = _HASHERS[kind]
        _dummy_hash.cache_clear()  # an unknown email costs what a wrong password costs, at this cost


class Principal(NamedTuple):
    """Who a read request is for, read as one row (no ORM object): what the token check and
    the order policy ask of a user."""
    id: int
    roles: str
    blocked: bool
    token_version: int

    def has_role(self, role: str) -> bool:
        return role in self.roles.split(",")


_PRINCIPAL = Prepared(select(*(User.__table__.c[k] for k in Principal._fields))
                      .where(User.__table__.c.id == bindparam("id")))


async def principal(session: Session, user_id: int) -> Principal | None:
    """Run on the session's driver connection (store.db.Prepared), awaited on PostgreSQL before
    the session has begun: every signed-in request reads it."""
    row = await _PRINCIPAL.afirst(session, {"id": user_id})
    return None if row is None else Principal(*row)


class TokenPair(NamedTuple):
    access: str
    refresh: str


class PayoutNode(NamedTuple):
    rest_url: str
    macaroon_hex: str
    tls_cert_pem: str
    node_pubkey: str


# --- registration and login ------------------------------------------------------------------

def register(session: Session, ctx: AppContext, email: str, password: str, display_name: str,
             roles: Iterable[str]) -> User:
    """Self-registration: only buyer, seller and courier; arbiter and admin come from an admin."""
    chosen = _clean_roles(roles)
    privileged = sorted(set(chosen) - SELF_SERVICE_ROLES)
    if privileged:
        noun = "roles are" if len(privileged) > 1 else "role is"
        raise PermissionDenied(f"the {' and '.join(privileged)} {noun} granted by an admin, "
                               "not chosen at registration", field="roles")
    return _create_user(session, email, password, display_name, chosen)


def login(session: Session, ctx: AppContext, email: str, password: str,
          totp_code: str | None = None) -> TokenPair:
    """Check the password (and the TOTP code when 2FA is on) and issue a token pair."""
    user = session.scalars(select(User).where(User.email == _clean_email(email)).with_for_update()).first()
    if user is None:
        _burn_hash_time(password)
        raise lockout.wrong_credentials()
    lockout.ensure_not_locked(user)
    if not _password_matches(user, password):
        lockout.record_failure(session, ctx, user, lockout.wrong_credentials())
    # Only now: a blocked account is not revealed to someone without its password.
    if user.blocked:
        raise PermissionDenied("this account is blocked")
    if user.totp_enabled:
        if not totp_code:
            raise TwoFactorRequired("this account uses two-factor authentication: send totp_code",
                                    field="totp_code")
        check_code(session, ctx, user, totp_code,
                   NotAuthenticated("wrong two-factor code", field="totp_code"))
    lockout.clear_failures(user)
    _upgrade_hash(user, password)
    return _start_family(session, ctx, user)


def refresh(session: Session, ctx: AppContext, refresh_token: str) -> TokenPair:
    """Trade a refresh token for a fresh pair. Each refresh token works once: the pair
    carries its successor, and ``logout_all`` invalidates every earlier one.

    A used one coming back means two holders (the owner and a thief, in some order),
    so it is refused and, as OAuth's refresh-token rotation prescribes, the login's
    whole family is revoked; the account's token version is bumped too, so access
    tokens already handed out, the thief's included, stop working at once."""
    claims = tokens.verify(ctx.settings.secret_key, refresh_token, "refresh")
    user = session.get(User, int(claims["sub"]))
    if user is None or claims.get("ver", 0) != user.token_version:
        raise NotAuthenticated("refresh token no longer valid: log in again")
    family = session.get(RefreshFamily, str(claims.get("fam", "")))
    if family is None or family.user_id != user.id or family.revoked_at is not None or "jti" not in claims:
        raise NotAuthenticated("refresh token no longer valid: log in again")
    if user.blocked:
        raise PermissionDenied("this account is blocked")
    jti = tokens.new_id()
    # Compare-and-swap: of two requests with the same token, exactly one moves the family on.
    moved = session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family.id, RefreshFamily.current_jti == str(claims["jti"]),
               RefreshFamily.revoked_at.is_(None))
        .values(current_jti=jti, expires_at=_refresh_expiry(ctx))).rowcount
    if moved != 1:
        _revoke_after_reuse(session, user, family)
    return _issue_pair(ctx, user, family.id, jti)


def _revoke_after_reuse(session: Session, user: User, family: RefreshFamily) -> None:
    """Commits before raising: the request's transaction rolls back on the error, and a
    rolled-back revocation would leave the thief's copy working."""
    session.execute(update(RefreshFamily).where(RefreshFamily.id == family.id)
                    .values(revoked_at=datetime.now(timezone.utc)))
    session.execute(update(User).where(User.id == user.id).values(token_version=User.token_version + 1))
    session.commit()
    raise tokens.RefreshTokenReused("this refresh token was already used, so a copy of it exists: "
                                    "every session of this account is revoked, log in again")


def end_session(session: Session, ctx: AppContext, refresh_token: str) -> None:
    """Log one session out (the dashboard's logout): its login's refresh family is revoked,
    other devices keep theirs. A token that no longer verifies has nothing left to end."""
    try:
        claims = tokens.verify(ctx.settings.secret_key, refresh_token, "refresh")
    except NotAuthenticated:
        return
    session.execute(update(RefreshFamily)
                    .where(RefreshFamily.id == str(claims.get("fam", "")),
                           RefreshFamily.user_id == int(claims["sub"]), RefreshFamily.revoked_at.is_(None))
                    .values(revoked_at=datetime.now(timezone.utc)))


def logout_all(user: User) -> None:
    """Revoke every access and refresh token issued so far (all devices)."""
    user.token_version += 1


# --- profile -------------------------------------------------------------------------------

def set_display_name(user: User, display_name: str) -> None:
    user.display_name = _clean_display_name(display_name)


def set_address(ctx: AppContext, user: User, address: str) -> str:
    """Store the shipping address sealed, plus the hash a courier reports on delivery.
    Returns the address as stored (whitespace collapsed)."""
    cleaned = " ".join(address.split())
    if not cleaned:
        raise ValidationFailed("the shipping address is empty", field="address")
    if len(cleaned) > MAX_ADDRESS_LEN:
        raise ValidationFailed(f"the shipping address is longer than {MAX_ADDRESS_LEN} characters",
                               field="address")
    user.address_enc = ctx.box.seal(cleaned.encode())
    user.address_hash = address_hash(cleaned)
    return cleaned


def get_address(ctx: AppContext, user: User) -> str:
    if user.address_enc is None:
        raise NotFound("no shipping address set: PUT /me/address first")
    return ctx.box.open(user.address_enc).decode()


# --- payout node ---------------------------------------------------------------------------

def bind_payout_node(ctx: AppContext, user: User, node_pubkey: str, rest_url: str, macaroon_hex: str,
                     tls_cert_pem: str) -> None:
    """Record where payouts go. Checks shape only: the node is first contacted at payout time."""
    pubkey = node_credentials.clean_pubkey(node_pubkey)
    url = node_credentials.clean_rest_url(rest_url)
    macaroon = node_credentials.clean_macaroon(macaroon_hex)
    cert = node_credentials.clean_cert(tls_cert_pem)
    user.node_pubkey = pubkey
    user.payout_rest_url = url
    user.payout_macaroon_enc = ctx.box.seal(macaroon.encode())
    user.payout_tls_cert_enc = ctx.box.seal(cert.encode())


def unbind_payout_node(user: User) -> None:
    user.node_pubkey = None
    user.payout_rest_url = None
    user.payout_macaroon_enc = None
    user.payout_tls_cert_enc = None


def payout_node(ctx: AppContext, user: User) -> PayoutNode | None:
    """The decrypted payout binding, or None when the user has not bound a node."""
    if user.payout_rest_url is None or user.payout_macaroon_enc is None or user.payout_tls_cert_enc is None:
        return None
    return PayoutNode(rest_url=user.payout_rest_url,
                      macaroon_hex=ctx.box.open(user.payout_macaroon_enc).decode(),
                      tls_cert_pem=ctx.box.open(user.payout_tls_cert_enc).decode(),
                      node_pubkey=user.node_pubkey or "")


# --- admin ---------------------------------------------------------------------------------

def list_users(session: Session, limit: int, offset: int) -> tuple[list[User], int]:
    total = session.scalar(select(func.count()).select_from(User)) or 0
    users = session.scalars(select(User).order_by(User.id).limit(limit).offset(offset)).all()
    return list(users), total


def grant_role(session: Session, user_id: int, role: str) -> User:
    role = _clean_role(role)
    user = _get_user(session, user_id)
    roles = set(_roles_of(user)) | {role}
    user.roles = _join_roles(roles)
    return user


def revoke_role(session: Session, admin: User, user_id: int, role: str) -> User:
    """Remove a role; an admin cannot drop their own admin role and leave nobody in charge."""
    role = _clean_role(role)
    user = _get_user(session, user_id)
    if user.id == admin.id and role == "admin":
        raise PermissionDenied("you cannot revoke your own admin role")
    user.roles = _join_roles(set(_roles_of(user)) - {role})
    return user


def set_blocked(session: Session, admin: User, user_id: int, blocked: bool) -> User:
    """Block or unblock. Blocking also revokes tokens, so unblocking does not revive stolen ones."""
    user = _get_user(session, user_id)
    if user.id == admin.id and blocked:
        raise PermissionDenied("you cannot block your own account")
    if blocked and not user.blocked:
        user.token_version += 1
    user.blocked = blocked
    return user


def bootstrap_admin(ctx: AppContext) -> None:
    """At start-up: create the configured admin once. Later starts leave that account alone."""
    email, password = ctx.settings.bootstrap_admin_email, ctx.settings.bootstrap_admin_password
    if not (email and password):
        return
    try:
        with ctx.db.session() as session:
            if session.scalars(select(User.id).where(User.email == _clean_email(email))).first() is None:
                _create_user(session, email, password, "admin", ["admin"])
    except Conflict:
        pass  # another process started at the same moment and created it
    except ValidationFailed as exc:
        raise ValueError(f"bootstrap_admin_{exc.extra.get('field')}: {exc.message}") from None


# --- helpers -------------------------------------------------------------------------------

def _create_user(session: Session, email: str, password: str, display_name: str, roles: list[str]) -> User:
    _check_password(password)
    email, display_name = _clean_email(email), _clean_display_name(display_name)
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise _duplicate(email)
    user = User(email=email, display_name=display_name, password_hash=_hasher.hash(password),
                roles=_join_roles(roles))
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise _duplicate(user.email) from None  # lost a race with a concurrent registration
    return user


def _duplicate(email: str) -> Conflict:
    return Conflict(f"an account with email {email} already exists", field="email")


def _refresh_expiry(ctx: AppContext) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=ctx.settings.refresh_token_ttl_s)


def _start_family(session: Session, ctx: AppContext, user: User) -> TokenPair:
    """A login starts a new chain of refresh tokens; the user's expired chains go."""
    session.execute(delete(RefreshFamily).where(RefreshFamily.user_id == user.id,
                                                RefreshFamily.expires_at < datetime.now(timezone.utc)))
    family = RefreshFamily(id=tokens.new_id(), user_id=user.id, current_jti=tokens.new_id(),
                           expires_at=_refresh_expiry(ctx))
    session.add(family)
    session.flush()
    return _issue_pair(ctx, user, family.id, family.current_jti)


def _issue_pair(ctx: AppContext, user: User, family: str, jti: str) -> TokenPair:
    s = ctx.settings
    return TokenPair(access=tokens.issue(s.secret_key, user.id, "access", s.access_token_ttl_s, user.token_version),
                     refresh=tokens.issue(s.secret_key, user.id, "refresh", s.refresh_token_ttl_s,
                                          user.token_version, fam=family, jti=jti))


def _password_matches(user: User, password: str) -> bool:
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    return True


def _upgrade_hash(user: User, password: str) -> None:
    # Stronger argon2 parameters reach old accounts the next time their owners log in.
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("not a password of anyone")


def _burn_hash_time(password: str) -> None:
    # An unknown email must cost as much as a wrong password, or timing reveals which emails exist.
    try:
        _hasher.verify(_dummy_hash(), password[:MAX_PASSWORD_LEN])
    except VerificationError:
        pass


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise ValidationFailed(f"the password needs at least {MIN_PASSWORD_LEN} characters", field="password")
    if len(password) > MAX_PASSWORD_LEN:
        raise ValidationFailed(f"the password is longer than {MAX_PASSWORD_LEN} characters", field="password")


def _clean_email(email: str) -> str:
    # Emails compare case-insensitively, so Alice@x and alice@x cannot be two accounts.
    return email.strip().lower()


def _clean_display_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValidationFailed("the display name is empty", field="display_name")
    if len(cleaned) > MAX_DISPLAY_NAME_LEN:
        raise ValidationFailed(f"the display name is longer than {MAX_DISPLAY_NAME_LEN} characters",
                               field="display_name")
    return cleaned


def _clean_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}: choose from {', '.join(ROLES)}", field="role")
    return role


def _clean_roles(roles: Iterable[str]) -> list[str]:
    chosen = set(roles)
    if not chosen:
        raise ValidationFailed("choose at least one role", field="roles")
    unknown = sorted(chosen - set(ROLES))
    if unknown:
        raise ValidationFailed(f"unknown role {', '.join(unknown)}: choose from {', '.join(ROLES)}",
                               field="roles")
    return [r for r in ROLES if r in chosen]


def _roles_of(user: User) -> list[str]:
    return [r for r in user.roles.split(",") if r]


def _join_roles(roles: Iterable[str]) -> str:
    # Canonical order keeps the column stable whatever order roles were granted in.
    chosen = set(roles)
    return ",".join(r for r in ROLES if r in chosen)


def _get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user
