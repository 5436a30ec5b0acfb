"""Two-factor authentication: enrol, verify, log in with a code, wrong codes and lockout, disable."""

from __future__ import annotations

import pyotp
import pyotp.totp
from fastapi.testclient import TestClient

from .test_accounts import bearer, login, problem, signed_in, tokens


def now() -> float:
    """The moment the codes are read at: conftest's ``totp_clock`` stops it for the app and pyotp."""
    return pyotp.totp.time.time()


def wrong_code(secret: str) -> str:
    """A well-formed code that is not valid in the accepted window (one step either side)."""
    totp, now_ = pyotp.TOTP(secret), now()
    valid = {totp.at(now_ + step * 30) for step in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def enrol(api: TestClient, headers: dict) -> str:
    resp = api.post("/auth/totp/enrol", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["secret"]


def enable_totp(api: TestClient, headers: dict) -> str:
    """Enable with the previous step's code (still in the window), so the current step's code
    stays unused for the test."""
    secret = enrol(api, headers)
    resp = api.post("/auth/totp/verify", headers=headers, json={"code": pyotp.TOTP(secret).at(now() - 30)})
    assert resp.status_code == 204, resp.text
    return secret


def test_totp_enrol_returns_secret_and_uri_without_enabling(api):
    headers = signed_in(api)
    resp = api.post("/auth/totp/enrol", headers=headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/escrowlab:alice%40example.com?secret=" + body["secret"])
    assert api.get("/me", headers=headers).json()["totp_enabled"] is False
    assert login(api).status_code == 200          # not enforced until verified


def test_totp_verify_enables_and_login_requires_code(api):
    headers = signed_in(api)
    enable_totp(api, headers)
    assert api.get("/me", headers=headers).json()["totp_enabled"] is True
    body = problem(login(api), 401, "two_factor_required",
                   "this account uses two-factor authentication: send totp_code")
    assert body["field"] == "totp_code"


def test_login_with_totp_code_succeeds(api):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    pair = tokens(api, totp_code=pyotp.TOTP(secret).now())
    assert api.get("/me", headers=bearer(pair)).status_code == 200


def test_login_wrong_totp_code_rejected(api):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    body = problem(login(api, totp_code=wrong_code(secret)), 401, "not_authenticated", "wrong two-factor code")
    assert body["field"] == "totp_code"


def test_login_wrong_totp_codes_lock_out(api, settings):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    for _ in range(settings.totp_max_failures - 1):
        problem(login(api, totp_code=wrong_code(secret)), 401, "not_authenticated", "wrong two-factor code")
    resp = login(api, totp_code=wrong_code(secret))
    problem(resp, 429, "locked_out", f"too many failed attempts: try again in {settings.lockout_s} s")
    assert resp.headers["Retry-After"] == str(settings.lockout_s)
    assert login(api, totp_code=pyotp.TOTP(secret).now()).status_code == 429


def test_login_password_and_code_failures_share_one_budget(api, settings):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    for _ in range(settings.totp_max_failures - 1):
        login(api, password="wrong-password")
    resp = login(api, totp_code=wrong_code(secret))
    assert resp.status_code == 429 and resp.json()["code"] == "locked_out"


def test_login_malformed_totp_code_names_field(api):
    signed_in(api)
    resp = login(api, totp_code="12ab")
    assert resp.status_code == 422
    assert resp.json()["field"] == "totp_code"


def test_totp_verify_wrong_code_changes_nothing(api):
    headers = signed_in(api)
    secret = enrol(api, headers)
    resp = api.post("/auth/totp/verify", headers=headers, json={"code": wrong_code(secret)})
    assert problem(resp, 422, "validation_failed", "wrong two-factor code")["field"] == "code"
    assert api.get("/me", headers=headers).json()["totp_enabled"] is False


def test_totp_verify_wrong_codes_lock_out(api, settings):
    headers = signed_in(api)
    secret = enrol(api, headers)
    for _ in range(settings.totp_max_failures - 1):
        api.post("/auth/totp/verify", headers=headers, json={"code": wrong_code(secret)})
    resp = api.post("/auth/totp/verify", headers=headers, json={"code": wrong_code(secret)})
    problem(resp, 429, "locked_out", f"too many failed attempts: try again in {settings.lockout_s} s")
    resp = api.post("/auth/totp/verify", headers=headers, json={"code": pyotp.TOTP(secret).now()})
    assert resp.status_code == 429
    assert api.get("/me", headers=headers).json()["totp_enabled"] is False


def test_totp_verify_without_enrolment_conflict(api):
    headers = signed_in(api)
    resp = api.post("/auth/totp/verify", headers=headers, json={"code": "123456"})
    problem(resp, 409, "conflict", "no enrolment to verify: POST /auth/totp/enrol first")


def test_totp_verify_malformed_code_names_field(api):
    headers = signed_in(api)
    enrol(api, headers)
    resp = api.post("/auth/totp/verify", headers=headers, json={"code": "1234567"})
    assert resp.status_code == 422 and resp.json()["field"] == "code"


def test_totp_enrol_when_enabled_conflict(api):
    headers = signed_in(api)
    enable_totp(api, headers)
    problem(api.post("/auth/totp/enrol", headers=headers), 409, "conflict",
            "two-factor authentication is already enabled: disable it before enrolling again")


def test_totp_enrol_missing_token_401(api):
    problem(api.post("/auth/totp/enrol"), 401, "not_authenticated",
            "log in first: send 'Authorization: Bearer <access token>'")


def test_totp_disable_needs_valid_code(api):
    headers = signed_in(api)
    secret = enable_totp(api, headers)
    resp = api.post("/auth/totp/disable", headers=headers, json={"code": wrong_code(secret)})
    problem(resp, 422, "validation_failed", "wrong two-factor code")
    assert api.get("/me", headers=headers).json()["totp_enabled"] is True
    resp = api.post("/auth/totp/disable", headers=headers, json={"code": pyotp.TOTP(secret).now()})
    assert resp.status_code == 204
    assert login(api).status_code == 200


def test_totp_disable_when_off_conflict(api):
    headers = signed_in(api)
    resp = api.post("/auth/totp/disable", headers=headers, json={"code": "123456"})
    problem(resp, 409, "conflict", "two-factor authentication is not enabled")


def test_totp_secret_stored_encrypted(api):
    headers = signed_in(api)
    secret = enrol(api, headers)
    with api.app.state.ctx.db.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT totp_secret_enc FROM users WHERE email = 'alice@example.com'").scalar_one()
    assert secret.encode() not in bytes(raw)
    assert secret not in api.get("/me", headers=headers).text
