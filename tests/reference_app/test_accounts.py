"""Accounts over HTTP: registration, login and lockout, tokens, roles, blocking, bootstrap admin.

Helpers at the top are shared with the other test_accounts_*.py files.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from reference_app.services import accounts
from reference_app.store.models import User

PASSWORD = "correct-horse-battery"
ADMIN = ("admin@example.com", "admin-password-1")   # from conftest.make_settings


def problem(resp: httpx.Response, status: int, code: str, detail: str) -> dict:
    """Assert one problem+json error, code and message together; return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert (body["code"], body["detail"]) == (code, detail)
    return body


def register(api: TestClient, email: str = "alice@example.com", roles: list[str] | None = None,
             password: str = PASSWORD, name: str = "Alice") -> dict:
    resp = api.post("/auth/register", json={"email": email, "password": password, "display_name": name,
                                            "roles": roles or ["buyer"]})
    assert resp.status_code == 201, resp.text
    return resp.json()


def login(api: TestClient, email: str = "alice@example.com", password: str = PASSWORD, **extra) -> httpx.Response:
    return api.post("/auth/login", json={"email": email, "password": password, **extra})


def tokens(api: TestClient, email: str = "alice@example.com", password: str = PASSWORD, **extra) -> dict:
    resp = login(api, email, password, **extra)
    assert resp.status_code == 200, resp.text
    return resp.json()


def bearer(token_pair: dict) -> dict:
    return {"Authorization": f"Bearer {token_pair['access_token']}"}


def signed_in(api: TestClient, email: str = "alice@example.com", roles: list[str] | None = None) -> dict:
    """Register and log in; the Authorization header for that user."""
    register(api, email, roles)
    return bearer(tokens(api, email))


def admin_headers(api: TestClient) -> dict:
    return bearer(tokens(api, *ADMIN))


def set_db_user(api: TestClient, email: str, **values) -> None:
    with api.app.state.ctx.db.session() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        for name, value in values.items():
            setattr(user, name, value)


# --- register ------------------------------------------------------------------------------

def test_register_returns_user_without_secrets(api):
    body = register(api, "Alice@Example.com", ["buyer", "seller"])
    assert body["email"] == "alice@example.com"
    assert body["roles"] == ["buyer", "seller"]
    assert body["created_at"].endswith("Z")
    assert set(body) == {"id", "email", "display_name", "roles", "blocked", "totp_enabled", "has_address",
                         "payout_node", "created_at"}


def test_register_duplicate_email_conflict(api):
    register(api)
    resp = api.post("/auth/register", json={"email": "ALICE@example.com", "password": PASSWORD,
                                            "display_name": "Imposter"})
    body = problem(resp, 409, "conflict", "an account with email alice@example.com already exists")
    assert body["field"] == "email"


def test_register_short_password_names_field(api):
    resp = api.post("/auth/register", json={"email": "bob@example.com", "password": "short",
                                            "display_name": "Bob"})
    body = problem(resp, 422, "validation_failed", "the password needs at least 10 characters")
    assert body["field"] == "password"
    problem(login(api, "bob@example.com", "short"), 401, "not_authenticated", "wrong email or password")


def test_register_malformed_email_names_field(api):
    resp = api.post("/auth/register", json={"email": "not-an-email", "password": PASSWORD, "display_name": "X"})
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "validation_failed" and body["field"] == "email"
    assert body["detail"].startswith("email: value is not a valid email address")


def test_register_missing_field_names_field(api):
    resp = api.post("/auth/register", json={"email": "bob@example.com", "display_name": "Bob"})
    assert problem(resp, 422, "validation_failed", "password: Field required")["field"] == "password"


def test_register_unknown_field_rejected(api):
    resp = api.post("/auth/register", json={"email": "bob@example.com", "password": PASSWORD,
                                            "display_name": "Bob", "is_admin": True})
    assert problem(resp, 422, "validation_failed", "is_admin: Extra inputs are not permitted")["field"] == "is_admin"


def test_register_empty_display_name_names_field(api):
    resp = api.post("/auth/register", json={"email": "bob@example.com", "password": PASSWORD, "display_name": "  "})
    assert problem(resp, 422, "validation_failed", "the display name is empty")["field"] == "display_name"


@pytest.mark.parametrize("role", ["admin", "arbiter"])
def test_register_privileged_role_denied(api, role):
    resp = api.post("/auth/register", json={"email": "eve@example.com", "password": PASSWORD,
                                            "display_name": "Eve", "roles": ["buyer", role]})
    body = problem(resp, 403, "permission_denied",
                   f"the {role} role is granted by an admin, not chosen at registration")
    assert body["field"] == "roles"
    problem(login(api, "eve@example.com"), 401, "not_authenticated", "wrong email or password")


def test_register_unknown_role_names_field(api):
    resp = api.post("/auth/register", json={"email": "eve@example.com", "password": PASSWORD,
                                            "display_name": "Eve", "roles": ["wizard"]})
    assert resp.status_code == 422
    assert resp.json()["field"] == "roles.0"


# --- login ---------------------------------------------------------------------------------

def test_login_tokens_open_me(api):
    register(api)
    pair = tokens(api, "ALICE@example.com")
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900
    me = api.get("/me", headers=bearer(pair))
    assert me.status_code == 200 and me.json()["email"] == "alice@example.com"


def test_login_wrong_password_same_message_as_unknown_email(api):
    register(api)
    problem(login(api, password="wrong-password"), 401, "not_authenticated", "wrong email or password")
    problem(login(api, "nobody@example.com"), 401, "not_authenticated", "wrong email or password")


def test_login_malformed_body_names_field(api):
    resp = api.post("/auth/login", json={"email": "alice@example.com"})
    assert problem(resp, 422, "validation_failed", "password: Field required")["field"] == "password"


def test_login_lockout_after_max_failures_sets_retry_after(api, settings):
    register(api)
    for _ in range(settings.totp_max_failures - 1):
        problem(login(api, password="wrong-password"), 401, "not_authenticated", "wrong email or password")
    resp = login(api, password="wrong-password")
    body = problem(resp, 429, "locked_out", "too many failed attempts: try again in 900 s")
    assert body["retry_after_s"] == 900 and resp.headers["Retry-After"] == "900"
    # locked means locked: the right password does not get in either
    resp = login(api)
    assert resp.status_code == 429 and resp.json()["code"] == "locked_out"
    assert 0 < int(resp.headers["Retry-After"]) <= 900


def test_login_lockout_expires(api, settings):
    register(api)
    for _ in range(settings.totp_max_failures):
        login(api, password="wrong-password")
    set_db_user(api, "alice@example.com", locked_until=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert login(api).status_code == 200


def test_login_success_resets_failure_count(api, settings):
    register(api)
    for _ in range(settings.totp_max_failures - 1):
        login(api, password="wrong-password")
    tokens(api)
    for _ in range(settings.totp_max_failures - 1):
        problem(login(api, password="wrong-password"), 401, "not_authenticated", "wrong email or password")


# --- tokens --------------------------------------------------------------------------------

def test_refresh_issues_working_pair(api):
    register(api)
    pair = tokens(api)
    resp = api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert resp.status_code == 200, resp.text
    assert api.get("/me", headers=bearer(resp.json())).status_code == 200


def test_refresh_with_access_token_rejected(api):
    register(api)
    pair = tokens(api)
    resp = api.post("/auth/refresh", json={"refresh_token": pair["access_token"]})
    problem(resp, 401, "not_authenticated", "a refresh token is needed")


def test_refresh_garbage_token_rejected(api):
    problem(api.post("/auth/refresh", json={"refresh_token": "nonsense"}), 401, "not_authenticated", "invalid token")


def test_logout_all_revokes_old_tokens(api):
    register(api)
    pair = tokens(api)
    assert api.post("/auth/logout-all", headers=bearer(pair)).status_code == 204
    problem(api.get("/me", headers=bearer(pair)), 401, "not_authenticated", "token no longer valid")
    problem(api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401, "not_authenticated",
            "refresh token no longer valid: log in again")
    assert api.get("/me", headers=bearer(tokens(api))).status_code == 200


def test_me_missing_token_401(api):
    problem(api.get("/me"), 401, "not_authenticated", "log in first: send 'Authorization: Bearer <access token>'")


def test_me_refresh_token_as_access_401(api):
    register(api)
    pair = tokens(api)
    resp = api.get("/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    problem(resp, 401, "not_authenticated", "an access token is needed")


# --- admin: roles and blocking ----------------------------------------------------------------

def test_admin_route_wrong_role_403(api):
    headers = signed_in(api, roles=["buyer", "seller"])
    problem(api.get("/admin/users", headers=headers), 403, "permission_denied", "this needs the admin role")
    resp = api.post("/admin/users/1/roles", headers=headers, json={"role": "admin", "grant": True})
    problem(resp, 403, "permission_denied", "this needs the admin role")


def test_bootstrap_admin_grants_arbiter(api):
    user = register(api)
    resp = api.post(f"/admin/users/{user['id']}/roles", headers=admin_headers(api),
                    json={"role": "arbiter", "grant": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["roles"] == ["buyer", "arbiter"]
    assert api.get("/me", headers=bearer(tokens(api))).json()["roles"] == ["buyer", "arbiter"]


def test_bootstrap_admin_is_idempotent(api):
    ctx = api.app.state.ctx
    accounts.bootstrap_admin(ctx)
    with ctx.db.session() as session:
        admins = session.scalars(select(User).where(User.email == ADMIN[0])).all()
    assert [a.roles for a in admins] == ["admin"]


def test_admin_revoke_role(api):
    user = register(api, roles=["buyer", "seller"])
    resp = api.post(f"/admin/users/{user['id']}/roles", headers=admin_headers(api),
                    json={"role": "seller", "grant": False})
    assert resp.status_code == 200 and resp.json()["roles"] == ["buyer"]


def test_admin_revoke_own_admin_denied(api):
    headers = admin_headers(api)
    admin_id = api.get("/me", headers=headers).json()["id"]
    resp = api.post(f"/admin/users/{admin_id}/roles", headers=headers, json={"role": "admin", "grant": False})
    problem(resp, 403, "permission_denied", "you cannot revoke your own admin role")


def test_admin_grant_unknown_user_404(api):
    resp = api.post("/admin/users/999/roles", headers=admin_headers(api), json={"role": "arbiter", "grant": True})
    problem(resp, 404, "not_found", "user 999 does not exist")


def test_admin_grant_unknown_role_names_field(api):
    user = register(api)
    resp = api.post(f"/admin/users/{user['id']}/roles", headers=admin_headers(api),
                    json={"role": "wizard", "grant": True})
    assert resp.status_code == 422 and resp.json()["field"] == "role"


def test_admin_list_users_paginates(api):
    register(api, "a@example.com")
    register(api, "b@example.com")
    resp = api.get("/admin/users?limit=2&offset=1", headers=admin_headers(api))
    assert resp.status_code == 200
    body = resp.json()
    assert body["total"] == 3
    assert [u["email"] for u in body["items"]] == ["a@example.com", "b@example.com"]


def test_block_user_cannot_log_in_or_use_tokens(api):
    user = register(api)
    pair = tokens(api)
    resp = api.post(f"/admin/users/{user['id']}/block", headers=admin_headers(api), json={"blocked": True})
    assert resp.status_code == 200 and resp.json()["blocked"] is True
    problem(login(api), 403, "permission_denied", "this account is blocked")
    problem(api.get("/me", headers=bearer(pair)), 401, "not_authenticated", "token no longer valid")
    problem(api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401, "not_authenticated",
            "refresh token no longer valid: log in again")


def test_block_user_with_current_token_denied(api):
    """Blocked straight in the database, with no token revocation: the check in deps still stops it."""
    register(api)
    pair = tokens(api)
    set_db_user(api, "alice@example.com", blocked=True)
    problem(api.get("/me", headers=bearer(pair)), 403, "permission_denied", "this account is blocked")


def test_block_then_unblock_restores_login_not_old_tokens(api):
    user = register(api)
    old = tokens(api)
    admin = admin_headers(api)
    api.post(f"/admin/users/{user['id']}/block", headers=admin, json={"blocked": True})
    api.post(f"/admin/users/{user['id']}/block", headers=admin, json={"blocked": False})
    problem(api.get("/me", headers=bearer(old)), 401, "not_authenticated", "token no longer valid")
    assert api.get("/me", headers=bearer(tokens(api))).status_code == 200


def test_block_self_denied(api):
    headers = admin_headers(api)
    admin_id = api.get("/me", headers=headers).json()["id"]
    resp = api.post(f"/admin/users/{admin_id}/block", headers=headers, json={"blocked": True})
    problem(resp, 403, "permission_denied", "you cannot block your own account")
