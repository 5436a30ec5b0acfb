"""Credentials that count once: refresh tokens rotate on use (reuse revokes the login's
family and the account's sessions), and a TOTP code is refused after its step was used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pyotp
from sqlalchemy import func, select, update

from reference_app.services import tokens as jwt_tokens
from reference_app.services.totp import matching_step
from reference_app.store.models import RefreshFamily

from .test_accounts import bearer, login, problem, register, signed_in, tokens
from .test_accounts_totp import enable_totp

REUSED = ("this refresh token was already used, so a copy of it exists: "
          "every session of this account is revoked, log in again")
GONE = "refresh token no longer valid: log in again"


def refresh(api, token: str):
    return api.post("/auth/refresh", json={"refresh_token": token})


# --- refresh tokens --------------------------------------------------------------------------

def test_refresh_hands_out_a_new_refresh_token_each_time(api):
    register(api)
    token = tokens(api)["refresh_token"]
    seen = {token}
    for _ in range(3):
        resp = refresh(api, token)
        assert resp.status_code == 200, resp.text
        token = resp.json()["refresh_token"]
        assert token not in seen
        seen.add(token)
        assert api.get("/me", headers=bearer(resp.json())).status_code == 200


def test_refresh_reused_token_is_refused_and_revokes_every_session(api):
    register(api)
    first = tokens(api)
    other_device = tokens(api)
    rotated = refresh(api, first["refresh_token"]).json()
    body = problem(refresh(api, first["refresh_token"]), 401, "refresh_token_reused", REUSED)
    assert body["status"] == 401
    # the family's newest token (whoever holds it: owner or thief) and every access token are dead
    problem(refresh(api, rotated["refresh_token"]), 401, "not_authenticated", GONE)
    problem(api.get("/me", headers=bearer(rotated)), 401, "not_authenticated", "token no longer valid")
    problem(refresh(api, other_device["refresh_token"]), 401, "not_authenticated", GONE)
    # a fresh login works again
    assert refresh(api, tokens(api)["refresh_token"]).status_code == 200


def test_refresh_reuse_revokes_the_family_in_the_database(api):
    register(api)
    first = tokens(api)
    refresh(api, first["refresh_token"])
    refresh(api, first["refresh_token"])
    with api.app.state.ctx.db.session() as session:
        family = session.get(RefreshFamily, jwt_tokens.verify(api.app.state.ctx.settings.secret_key,
                                                               first["refresh_token"], "refresh")["fam"])
        assert family.revoked_at is not None


def test_refresh_concurrent_same_token_exactly_one_wins(api):
    register(api)
    token = tokens(api)["refresh_token"]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: refresh(api, token), range(2)))
    codes = sorted((a.status_code, a.json().get("code")) for a in answers)
    assert codes == [(200, None), (401, "refresh_token_reused")], [a.text for a in answers]


def test_refresh_token_without_family_is_refused(api):
    """A refresh token from before rotation (no ``fam``/``jti``) cannot be traded in."""
    user = register(api)
    ctx = api.app.state.ctx
    legacy = jwt_tokens.issue(ctx.settings.secret_key, user["id"], "refresh", 600, 0)
    problem(refresh(api, legacy), 401, "not_authenticated", GONE)


def test_refresh_token_of_another_users_family_is_refused(api):
    alice = register(api)
    register(api, "bob@example.com")
    bob_claims = jwt_tokens.verify(api.app.state.ctx.settings.secret_key,
                                   tokens(api, "bob@example.com")["refresh_token"], "refresh")
    forged = jwt_tokens.issue(api.app.state.ctx.settings.secret_key, alice["id"], "refresh", 600, 0,
                              fam=bob_claims["fam"], jti=bob_claims["jti"])
    problem(refresh(api, forged), 401, "not_authenticated", GONE)


def test_login_removes_expired_families(api):
    register(api)
    tokens(api)
    db = api.app.state.ctx.db
    with db.session() as session:
        session.execute(update(RefreshFamily).values(expires_at=datetime.now(timezone.utc) - timedelta(days=1)))
    tokens(api)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(RefreshFamily)) == 1


# --- TOTP codes ----------------------------------------------------------------------------

def test_login_totp_code_reused_is_refused(api):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    code = pyotp.TOTP(secret).now()
    assert login(api, totp_code=code).status_code == 200
    body = problem(login(api, totp_code=code), 401, "not_authenticated",
                   "this two-factor code was already used: wait for the next one")
    assert body["field"] == "totp_code"


def test_login_totp_code_of_an_earlier_step_is_refused(api, totp_clock):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    totp = pyotp.TOTP(secret)
    assert login(api, totp_code=totp.at(totp_clock + 30)).status_code == 200   # the next step, inside the window
    problem(login(api, totp_code=totp.at(totp_clock)), 401, "not_authenticated",
            "this two-factor code was already used: wait for the next one")


def test_totp_disable_with_code_used_at_login_is_refused(api):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    code = pyotp.TOTP(secret).now()
    assert login(api, totp_code=code).status_code == 200
    resp = api.post("/auth/totp/disable", headers=headers, json={"code": code})
    assert problem(resp, 422, "validation_failed",
                   "this two-factor code was already used: wait for the next one")["field"] == "code"
    assert api.get("/me", headers=headers).json()["totp_enabled"] is True


def test_totp_reused_codes_count_toward_lockout(api, settings):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    code = pyotp.TOTP(secret).now()
    assert login(api, totp_code=code).status_code == 200
    for _ in range(settings.totp_max_failures - 1):
        assert login(api, totp_code=code).status_code == 401
    assert login(api, totp_code=code).json()["code"] == "locked_out"


def test_matching_step_finds_the_step_inside_the_window_only():
    secret, at = pyotp.random_base32(), 1_700_000_000.0
    totp, step = pyotp.TOTP(secret), int(1_700_000_000 // 30)
    assert matching_step(secret, totp.at(at), at) == step
    assert matching_step(secret, totp.at(at + 30), at) == step + 1
    assert matching_step(secret, totp.at(at - 30), at) == step - 1
    near = {totp.at(at + k * 30) for k in (-1, 0, 1)}
    far = next(code for code in (totp.at(at - k * 30) for k in range(2, 100)) if code not in near)
    assert matching_step(secret, far, at) is None
