"""JWT access and refresh tokens (HS256)."""

from __future__ import annotations

import time

import jwt

from .errors import NotAuthenticated


def issue(secret: str, user_id: int, kind: str, ttl_s: int, version: int = 0) -> str:
    now = int(time.time())
    return jwt.encode({"sub": str(user_id), "typ": kind, "iat": now, "exp": now + ttl_s, "ver": version},
                      secret, algorithm="HS256")


def verify(secret: str, token: str, kind: str) -> dict:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "typ"]})
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("token expired") from None
    except jwt.PyJWTError:
        raise NotAuthenticated("invalid token") from None
    if claims.get("typ") != kind:
        raise NotAuthenticated(f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} token is needed")
    return claims
