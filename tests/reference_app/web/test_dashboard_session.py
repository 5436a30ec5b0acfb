"""Dashboard sessions slide: a token past half its life is re-issued, a lapsed one is traded
for a new pair through the refresh cookie (twice within the grace period without tripping
reuse detection), and logout ends the login's refresh family. Plus the SSE stream."""

from __future__ import annotations

from reference_app.services import tokens
from reference_app.web import views
from reference_app.web.session import ACCESS_COOKIE, REFRESH_COOKIE

ADMIN = {"email": "admin@example.com", "password": "admin-password-1"}


def signed_in(api) -> dict:
    answer = api.post("/dashboard/login", data=ADMIN, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return {c.split("=", 1)[0]: c.split("=", 1)[1].split(";")[0] for c in answer.headers.get_list("set-cookie")}


def access_token(api, ttl_s: int) -> str:
    ctx = api.app.state.ctx
    claims = tokens.verify(ctx.settings.secret_key, api.cookies.get(ACCESS_COOKIE), "access")
    return tokens.issue(ctx.settings.secret_key, int(claims["sub"]), "access", ttl_s, claims["ver"])


def set_access(api, token: str) -> None:
    api.cookies.set(ACCESS_COOKIE, token, domain="testserver.local", path="/dashboard")


def cookies_set(answer) -> dict:
    return {c.split("=", 1)[0]: c.split("=", 1)[1].split(";")[0] for c in answer.headers.get_list("set-cookie")}


def test_session_slides_a_token_past_half_its_life(api):
    signed_in(api)
    fresh = api.post("/dashboard/session")
    assert fresh.status_code == 200 and fresh.json()["signed_in"] is True
    assert ACCESS_COOKIE not in cookies_set(fresh)            # more than half its life left: kept
    short = access_token(api, 60)                             # 60 s of a 900 s life left
    api.cookies.clear()
    set_access(api, short)
    renewed = api.post("/dashboard/session")
    assert renewed.status_code == 200
    secret = api.app.state.ctx.settings.secret_key
    new = tokens.verify(secret, cookies_set(renewed)[ACCESS_COOKIE], "access")
    assert new["exp"] > tokens.verify(secret, short, "access")["exp"]
    assert renewed.json()["expires_in_s"] > 60


def test_lapsed_session_is_refreshed_and_a_second_tab_does_not_revoke_it(api):
    cookies = signed_in(api)
    lapsed = access_token(api, -10)
    set_access(api, lapsed)
    first = api.get("/dashboard/escrow")
    assert first.status_code == 200, first.text
    pair = cookies_set(first)
    assert set(pair) == {ACCESS_COOKIE, REFRESH_COOKIE} and pair[REFRESH_COOKIE] != cookies[REFRESH_COOKIE]
    # a second tab woke at the same moment with the same (old) cookies: same new pair, no revocation
    api.cookies.clear()
    api.cookies.set(REFRESH_COOKIE, cookies[REFRESH_COOKIE], domain="testserver.local", path="/dashboard")
    set_access(api, lapsed)
    second = api.post("/dashboard/session")
    assert second.status_code == 200 and cookies_set(second) == pair
    me = api.get("/me", headers={"Authorization": f"Bearer {pair[ACCESS_COOKIE]}"})
    assert me.status_code == 200


def test_lapsed_session_without_refresh_cookie_asks_to_sign_in(api):
    signed_in(api)
    lapsed = access_token(api, -10)
    api.cookies.clear()
    set_access(api, lapsed)
    page = api.get("/dashboard")
    assert page.status_code == 401 and 'action="/dashboard/login"' in page.text
    assert "token expired" in page.text
    assert api.post("/dashboard/session").status_code == 401


def test_logout_ends_the_login_so_its_refresh_cookie_is_dead(api):
    cookies = signed_in(api)
    out = api.post("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert api.get("/dashboard").status_code == 401
    api.cookies.set(REFRESH_COOKIE, cookies[REFRESH_COOKIE], domain="testserver.local", path="/dashboard")
    page = api.get("/dashboard")
    assert page.status_code == 401 and "refresh token no longer valid" in page.text


def test_events_stream_a_snapshot_of_the_view_to_admins_only(api, monkeypatch):
    assert api.get("/dashboard/events", params={"view": "overview"}).status_code == 401
    signed_in(api)
    monkeypatch.setattr(views, "STREAM_MAX_S", 0.5)       # one snapshot, then the stream ends
    answer = api.get("/dashboard/events", params={"view": "overview"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert answer.text.startswith("retry: ")
    assert "event: snapshot\nid: 1\ndata: {" in answer.text
    assert '\\"gmv\\"' in answer.text or 'data-live=\\"gmv\\"' in answer.text
    assert api.get("/dashboard/events", params={"view": "nope"}).status_code == 404
