"""The dashboard without nodes: admins only, the login form, report files only from inside
the runs folder, and every report of the runs folder (load runs included)."""

from __future__ import annotations

import re

from reference_app.web import reports
from reference_app.web.session import ACCESS_COOKIE, REFRESH_COOKIE
from tests.reference_app.test_listings import make_user

ADMIN = {"email": "admin@example.com", "password": "admin-password-1"}


def admin_token(api) -> str:
    login = api.post("/auth/login", json=ADMIN)
    return login.json()["access_token"]


def form_login(api, **fields):
    return api.post("/dashboard/login", data={**ADMIN, "next": "/dashboard/escrow", **fields},
                    follow_redirects=False)


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
    page = api.get("/dashboard/network")
    assert page.status_code == 200 and 'id="cluster"' in page.text and "no nodes configured" in page.text


def test_login_form_signs_an_admin_in_with_both_cookies(api):
    form = api.get("/dashboard/login")
    assert form.status_code == 200
    assert 'action="/dashboard/login"' in form.text and 'name="totp_code"' in form.text
    answer = form_login(api)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/escrow"
    cookies = answer.headers.get_list("set-cookie")
    assert {c.split("=")[0] for c in cookies} == {ACCESS_COOKIE, REFRESH_COOKIE}
    for c in cookies:
        assert "httponly" in c.lower() and "samesite=strict" in c.lower() and "path=/dashboard" in c.lower()
    page = api.get("/dashboard/escrow")
    assert page.status_code == 200 and "admin@example.com" in page.text and 'id="open-orders"' in page.text


def test_login_form_refuses_wrong_passwords_and_non_admins_without_a_cookie(api):
    wrong = form_login(api, password="not-the-password")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert 'id="login-error"' in wrong.text and 'value="admin@example.com"' in wrong.text
    api.post("/auth/register", json={"email": "bob@example.com", "password": "bob-password-1",
                                     "display_name": "Bob", "roles": ["buyer"]})
    buyer = form_login(api, email="bob@example.com", password="bob-password-1")
    assert buyer.status_code == 401 and "set-cookie" not in buyer.headers
    assert "the dashboard is for admins" in buyer.text


def test_login_form_redirects_only_into_the_dashboard(api):
    answer = form_login(api, next="https://elsewhere.example/dashboard")
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"


def test_report_files_cannot_escape_the_runs_folder(api, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "0001-load" / "reports").mkdir(parents=True)
    (runs / "0001-load" / "reports" / "load.json").write_text("{}")
    (tmp_path / "secret.json").write_text("{}")
    ctx = api.app.state.ctx
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"runs_dir": runs}))  # ESCROWLAB_RUNS
    found = reports.reports(ctx)
    run = next(r for r in found if r["run"] == "0001-load")
    assert [f["name"] for f in run["files"]] == ["reports/load.json"]
    root = run["root"]
    assert reports.report_file(ctx, root, "0001-load/reports/load.json") is not None
    assert reports.report_file(ctx, root, "../secret.json") is None
    assert reports.report_file(ctx, 99, "0001-load/reports/load.json") is None
    api.get("/dashboard", params={"token": admin_token(api)})
    assert api.get(f"/dashboard/files/{root}/0001-load/reports/load.json").status_code == 200
    assert api.get(f"/dashboard/files/{root}/..%2Fsecret.json").status_code == 404


def test_latest_reports_lists_load_runs_scenarios_and_explore_newest_first(api, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    load = runs / "0003-load-steady"          # where loadtests/orchestrate.py writes: the run folder itself
    load.mkdir(parents=True)
    for name in ("summary.json", "summary.md", "load.png", "locust.html", "locust_stats.csv", "cluster.json",
                 "plan.json", "locust.log"):
        (load / name).write_text("x")
    (runs / "0002-scenarios" / "reports").mkdir(parents=True)
    (runs / "0002-scenarios" / "reports" / "scenarios.html").write_text("x")
    (runs / "0004-explore" / "explore").mkdir(parents=True)
    (runs / "0004-explore" / "explore" / "explore.json").write_text("{}")
    (runs / "0005-hub").mkdir()
    (runs / "0005-hub" / "cluster.json").write_text("{}")       # a cluster's run folder: no reports
    ctx = api.app.state.ctx
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"runs_dir": runs}))
    found = {r["run"]: r for r in reports.reports(ctx)}
    assert set(found) == {"0002-scenarios", "0003-load-steady", "0004-explore"}
    assert [f["name"] for f in found["0003-load-steady"]["files"]] == [
        "load.png", "locust.html", "locust_stats.csv", "summary.json", "summary.md"]
    assert found["0003-load-steady"]["kind"] == "load"
    api.get("/dashboard", params={"token": admin_token(api)})
    page = api.get("/dashboard").text
    assert "0003-load-steady / summary.json" in page and "0004-explore / explore/explore.json" in page
    assert "0003-load-steady / cluster.json" not in page


def test_latest_reports_hint_names_commands_that_exist(api, tmp_path, monkeypatch):
    ctx = api.app.state.ctx
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(
        update={"runs_dir": tmp_path / "empty-runs", "data_dir": tmp_path / "empty-data"}))
    api.get("/dashboard", params={"token": admin_token(api)})
    page = api.get("/dashboard").text
    hinted = [c.split() for c in re.findall(r"<code>escrowlab ([^<]+)</code>", page)]
    assert [h[0] for h in hinted] == ["scenario", "load", "simulate"]
    import typer.main

    from escrowlab.cli import app

    cli = typer.main.get_command(app)
    for words in hinted:                       # each hinted command is one the CLI has
        command = cli.commands[words[0]]
        if words[0] == "scenario":
            assert words[1] in command.commands



def test_report_files_are_only_reports_never_the_data_dirs_secrets(api, tmp_path):
    ctx = api.app.state.ctx
    data_root = reports.report_roots(ctx).index(tmp_path.resolve())
    assert (tmp_path / "app-secrets.json").is_file()          # the dev secrets live in the data dir
    assert reports.report_file(ctx, data_root, "app-secrets.json") is None
    api.get("/dashboard", params={"token": admin_token(api)})
    assert api.get(f"/dashboard/files/{data_root}/app-secrets.json").status_code == 404


def test_numbers_carry_thousands_separators():
    from reference_app.web.views import templates

    assert templates.env.filters["num"](1234567) == "1,234,567"
    assert templates.env.filters["num"](999) == "999"
    assert templates.env.filters["num"](None) == "-"


def test_login_form_asks_a_two_factor_account_for_its_code(api):
    import pyotp

    from tests.reference_app.test_accounts_totp import enable_totp, wrong_code

    secret = enable_totp(api, {"Authorization": f"Bearer {admin_token(api)}"})
    without = form_login(api)
    assert without.status_code == 401 and "set-cookie" not in without.headers
    assert "two-factor" in without.text
    wrong = form_login(api, totp_code=wrong_code(secret))
    assert wrong.status_code == 401 and "wrong two-factor code" in wrong.text
    right = form_login(api, totp_code=pyotp.TOTP(secret).now())
    assert right.status_code == 303 and len(right.headers.get_list("set-cookie")) == 2
