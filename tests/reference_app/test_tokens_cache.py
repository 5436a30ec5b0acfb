"""Access tokens are verified once and their claims kept (services/tokens.verify): a request
sends one every time. What a kept token must still be refused for: its expiry, checked on each
use, and a forgery or a token of the wrong kind, which never enter the cache."""

from __future__ import annotations

import time

import pytest

from reference_app.services import tokens
from reference_app.services.errors import NotAuthenticated

SECRET = "s" * 32


def test_a_kept_token_is_refused_once_it_expires(monkeypatch):
    token = tokens.issue(SECRET, 7, "access", ttl_s=60)
    assert tokens.verify(SECRET, token, "access")["sub"] == "7"
    assert (SECRET, token) in tokens._VERIFIED  # kept: the next use does not decode it
    later = time.time() + 61
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(NotAuthenticated, match="token expired"):
        tokens.verify(SECRET, token, "access")
    assert (SECRET, token) not in tokens._VERIFIED


def test_forged_and_wrong_kind_tokens_are_never_kept():
    token = tokens.issue(SECRET, 7, "access", ttl_s=60)
    with pytest.raises(NotAuthenticated, match="invalid token"):
        tokens.verify("another secret, of 32 characters", token, "access")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(NotAuthenticated, match="invalid token"):
        tokens.verify(SECRET, forged, "access")
    refresh = tokens.issue(SECRET, 7, "refresh", ttl_s=60)
    with pytest.raises(NotAuthenticated, match="an access token is needed"):
        tokens.verify(SECRET, refresh, "access")
    assert not any(key[1] in (forged, refresh) for key in tokens._VERIFIED)
    assert ("another secret, of 32 characters", token) not in tokens._VERIFIED
