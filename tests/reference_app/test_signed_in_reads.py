"""A signed-in request reads its user's row once (no nodes).

``current_user`` (the routes that change or show the account, and a new order) read the
principal's row for the token check, then the same row again as the ORM object. It now reads
the object once, checks the token against it and hands the principal on to the dependencies
that ask for one."""

from __future__ import annotations

import re

from reference_app.store.models import User
from tests.helpers import record_statements
from tests.reference_app.test_listings import make_user

USER_READ = re.compile(r"^\s*SELECT\b.*\bFROM users\b", re.IGNORECASE | re.DOTALL)


def user_reads(statements: list[str]) -> int:
    return sum(1 for s in statements if USER_READ.match(s))


def test_a_route_that_needs_the_account_reads_its_row_once(api, monkeypatch):
    user_id, headers = make_user(api, "buyer")
    seen = record_statements(api.app.state.ctx.db, monkeypatch)
    r = api.get("/me", headers=headers)
    assert r.status_code == 200 and r.json()["id"] == user_id, r.text
    assert user_reads(seen) == 1, seen


def test_the_account_read_once_still_refuses_a_blocked_user_and_an_old_token(api):
    ctx = api.app.state.ctx
    user_id, headers = make_user(api, "buyer")
    with ctx.db.session() as session:
        session.get(User, user_id).token_version += 1  # as a logout of every session does
    r = api.get("/me", headers=headers)
    assert (r.status_code, r.json()["detail"]) == (401, "token no longer valid"), r.text
    user_id, headers = make_user(api, "buyer")
    with ctx.db.session() as session:
        session.get(User, user_id).blocked = True
    r = api.get("/me", headers=headers)
    assert r.status_code == 403 and "blocked" in r.json()["detail"], r.text
