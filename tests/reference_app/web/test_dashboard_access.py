"""The dashboard without nodes: admins only, and report files only from inside the runs folder."""

from __future__ import annotations

from reference_app.web import data
from tests.reference_app.test_listings import make_user


def admin_token(api) -> str:
    login = api.post("/auth/login", json={"email": "admin@example.com", "password": "admin-password-1"})
    return login.json()["access_token"]


def test_dashboard_session_cookie_is_httponly_strict_and_needs_admin(api):
    assert api.get("/dashboard").status_code == 401
    _uid, headers = make_user(api, "buyer")
    buyer_token = headers["Authorization"].split()[1]
    assert api.get("/dashboard", params={"token": buyer_token}).status_code == 401
    assert api.get("/dashboard", params={"token": "not-a-jwt"}).status_code == 401
    signed_in = api.get("/dashboard", params={"token": admin_token(api)}, follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    page = api.get("/dashboard")
    assert page.status_code == 200 and 'id="cluster"' in page.text and "no nodes configured" in page.text


def test_report_files_cannot_escape_the_runs_folder(api, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "0001-load" / "reports").mkdir(parents=True)
    (runs / "0001-load" / "reports" / "load.json").write_text("{}")
    (tmp_path / "secret.json").write_text("{}")
    ctx = api.app.state.ctx
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"runs_dir": runs}))  # ESCROWLAB_RUNS
    found = data.reports(ctx)
    assert [(r["run"], r["name"]) for r in found if r["run"] == "0001-load"] == [("0001-load", "load.json")]
    root = next(r["root"] for r in found if r["run"] == "0001-load")
    assert data.report_file(ctx, root, "0001-load/reports/load.json") is not None
    assert data.report_file(ctx, root, "../secret.json") is None
    assert data.report_file(ctx, 99, "0001-load/reports/load.json") is None
    api.get("/dashboard", params={"token": admin_token(api)})
    assert api.get(f"/dashboard/files/{root}/0001-load/reports/load.json").status_code == 200
    assert api.get(f"/dashboard/files/{root}/..%2Fsecret.json").status_code == 404
