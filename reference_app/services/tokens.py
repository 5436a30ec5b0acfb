"""JWT access and refresh tokens (HS256).

A refresh token also names its login's family (``fam``) and its own id (``jti``):
services/accounts.refresh lets each one be used once (rotation with reuse detection).
"""

from __future__ import annotations

import secrets
import time

import jwt

from .errors import NotAuthenticated


class RefreshTokenReused(NotAuthenticated):
    """A refresh token that was already traded in: someone holds a copy, so its family is revoked."""

    code = "refresh_token_reused"


def new_id() -> str:
    return secrets.token_hex(16)


def issue(secret: str, user_id: int, kind: str, ttl_s: int, version: int = 0, **extra: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": str(user_id), "typ": kind, "iat": now, "exp": now + ttl_s, "ver": version, **extra},
                      secret, algorithm="HS256")


# Access tokens already verified, with their claims: every request sends one, and decoding it
# (base64, JSON, HMAC) had been a tenth of a write's CPU. A token's signature cannot change, and
# its expiry is checked on each use; revocation is the account's token version, read each time.
_VERIFIED: dict[tuple[str, str], dict] = {}
_VERIFIED_MAX = 4096


def verify(secret: str, token: str, kind: str) -> dict:
    if kind == "access":
        claims = _VERIFIED.get((secret, token))
        if claims is not None:
            if claims["exp"] <= time.time():
                _VERIFIED.pop((secret, token), None)
                raise NotAuthenticated("token expired")
            return claims
    claims = _decode(secret, token, kind)
    if kind == "access":
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[(secret, token)] = claims
    return claims


def _decode(secret: str, token: str, kind: str) -> dict:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "typ"]})
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("token expired") from None
    except jwt.PyJWTError:
        raise NotAuthenticated("invalid token") from None
    if claims.get("typ") != kind:
        raise NotAuthenticated(f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} token is needed")
    return claims
