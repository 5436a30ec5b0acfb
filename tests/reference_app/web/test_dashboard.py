"""The dashboard end to end in headless Chromium against the app on 127.0.0.1, on the shared
cluster with real escrows: the login form, the overview, the network view, the escrow view
with held hold-invoice HTLCs, a live update over SSE, /docs offline, and logout. The
screenshots are kept in a run folder (docs/img/ has copies)."""

from __future__ import annotations

import json

import pytest

from harness.actors_custodial import list_custodial
from regtest_cluster.env import ClusterEnv
from regtest_cluster.rundir import new_run_dir
from tests.reference_app.escrow.conftest import release_holds
from tests.reference_app.notifications.conftest import DEPOSIT, NOT_INITIATED_LOG, PRICE

from .browser import Browser

# the held escrows are cancelled at the end: the buyer's node logs its payments as failed
HOLD_CANCEL_LOG = pytest.mark.allow_log(r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")
pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG, HOLD_CANCEL_LOG]
HELD_PRICE = 25_000


def runs_with_reports(root):
    scenarios = root / "0001-scenarios" / "reports"
    scenarios.mkdir(parents=True)
    (scenarios / "summary.json").write_text('{"schema": "escrowlab.scenario-run/1", "passed": 1}')
    load = root / "0002-load-steady"              # a load run keeps its reports in the run folder itself
    load.mkdir()
    (load / "summary.json").write_text('{"profile": "steady"}')
    (load / "summary.md").write_text("# load\n")
    return root


def text(browser: Browser, selector: str) -> str:
    return browser.evaluate(f"document.querySelector({json.dumps(selector)}).textContent.replace(/\\s+/g, ' ').trim()")


def test_dashboard_views_in_chromium(served_market, tmp_path, monkeypatch):
    market = served_market
    run_dir = new_run_dir(ClusterEnv.from_environ().runs_dir, "dashboard")   # kept: CI uploads runs/
    monkeypatch.setattr(market.ctx, "settings",
                        market.ctx.settings.model_copy(update={"runs_dir": runs_with_reports(tmp_path / "runs")}))

    # escrows in three states: custodial funded; ln_hold funded and shipped (their HTLCs held at the hub)
    buyer, _account = market.funded_buyer(DEPOSIT)
    seller = market.seller()
    custodial = buyer.buy(list_custodial(seller, "dashboard item", PRICE)["id"])
    assert custodial["state"] == "FUNDED"
    held = market.funded_order(buyer, seller, HELD_PRICE)
    shipped = market.funded_order(buyer, seller, HELD_PRICE + 1_000)
    seller.ship(shipped["id"], "fastship", "TRACK-DASH-1")
    try:
        with Browser(tmp_path / "chromium") as b:
            check_login_form(b, market)
            check_overview(b, market, custodial, run_dir)
            check_network(b, market, run_dir)
            check_escrow(b, market, held, shipped, run_dir)
            check_docs_offline(b, market, run_dir)
            b.open(f"{market.url}/dashboard")
            b.evaluate("window.__old_page = true; document.querySelector('header form button').click()")
            b.loaded("logout")
            assert b.evaluate("location.pathname") == "/dashboard/login"
            b.open(f"{market.url}/dashboard/escrow")
            assert b.evaluate("!!document.querySelector('form.login')")
            outside = [u for u in b.requested if not u.startswith((market.url, "data:", "about:"))]
            assert outside == [], outside
    finally:
        release_holds(market)
    print(f"\ndashboard screenshots: {run_dir}")


def check_login_form(b: Browser, market) -> None:
    b.open(f"{market.url}/dashboard")
    assert b.evaluate("!!document.querySelector('form.login')"), "no login form"
    assert "for admins" in text(b, "#login")
    settings = market.ctx.settings
    b.evaluate(f"""window.__old_page = true;
        document.querySelector('input[name=email]').value = {json.dumps(settings.bootstrap_admin_email)};
        document.querySelector('input[name=password]').value = {json.dumps(settings.bootstrap_admin_password)};
        document.querySelector('form.login').submit();""")
    b.loaded("the sign-in")
    assert b.evaluate("location.pathname") == "/dashboard"
    assert b.evaluate("document.cookie") == ""          # the session cookies are HttpOnly


def live(b: Browser) -> None:
    b.wait_until("Number(document.body.dataset.liveEvents || 0) >= 1", what="a first SSE snapshot")


def check_overview(b: Browser, market, custodial: dict, run_dir) -> None:
    assert b.evaluate(f"!!document.querySelector('tr[data-order=\"{custodial['id']}\"]')")
    row = text(b, f"tr[data-order=\"{custodial['id']}\"]")
    assert "FUNDED" in row and "custodial" in row and f"{PRICE:,}" in row and "buyer1" in row and "seller1" in row
    assert text(b, "#reconciliation") == "ok"
    reports = text(b, "#reports")
    assert "0001-scenarios / reports/summary.json" in reports and "0002-load-steady / summary.md" in reports
    live(b)
    assert text(b, "#live-status").startswith("live")
    b.screenshot(run_dir / "overview.png")


def check_network(b: Browser, market, run_dir) -> None:
    b.open(f"{market.url}/dashboard/network")
    for node in market.cluster.nodes:
        assert b.evaluate(f"!!document.querySelector('tr.node[data-node=\"{node}\"]')"), node
    hub = market.cluster.node("hub").rest
    channels = hub.listchannels()
    assert int(text(b, "[data-live=channels]")) >= len(channels)
    for c in channels:
        row = f"tr.channel[data-channel=\"{c['chan_id']}\"]"
        if not b.evaluate(f"!!document.querySelector('{row}')"):
            continue                                         # listed from the peer's side
        assert b.evaluate(f"document.querySelectorAll('{row} .liq-local').length") == 1
        assert text(b, f"{row} .htlcs").split()[0] == f"{len(c.get('pending_htlcs') or []):,}"
    held = sum(len(c.get("pending_htlcs") or []) for c in channels)
    assert held >= 2                                          # the two held escrows
    assert b.evaluate("document.querySelectorAll('svg[data-live=graph] .gnode').length") == len(market.cluster.nodes)
    live(b)
    b.screenshot(run_dir / "network-view.png")


def check_escrow(b: Browser, market, held: dict, shipped: dict, run_dir) -> None:
    b.open(f"{market.url}/dashboard/escrow")
    tip = market.cluster.bitcoind.rpc.getblockcount()
    assert text(b, "#tip-height") in (f"{tip:,}", f"{tip + 1:,}")
    assert int(text(b, "[data-live=held-htlcs]")) >= 2
    gauges = b.evaluate("Array.from(document.querySelectorAll('#slots .gauge-label'), e => e.textContent)")
    assert any(g.endswith("of 483 slots") and not g.startswith("0 ") for g in gauges), gauges
    for order, state in ((held, "FUNDED"), (shipped, "SHIPPED")):
        row = f"tr.open-order[data-order=\"{order['id']}\"]"
        line = text(b, row)
        assert state in line and "ln_hold" in line and "buyer1" in line and "seller1" in line, line
        label = text(b, f"{row} .gauge-label")
        assert " at " in label and ("blocks left" in label or "due now" in label), label
        assert "HTLC expires at" in line
    assert "fastship" in text(b, f"tr.open-order[data-order=\"{shipped['id']}\"]")
    assert f"{HELD_PRICE:,}" in text(b, f"tr.open-order[data-order=\"{held['id']}\"]")
    live(b)
    check_live_update(b, market, held)
    b.wait_until("!document.querySelector('.changed')", what="the changed numbers to stop flashing")
    b.screenshot(run_dir / "escrow-view.png")


def check_live_update(b: Browser, market, held: dict) -> None:
    """Two blocks are mined: the open page's tip and the order's blocks left change without a reload."""
    label = f"tr.open-order[data-order=\"{held['id']}\"] .gauge-label"
    left_before = int(text(b, label).split(" · ")[1].split()[0])
    b.evaluate("window.__same_page = true")
    before = int(b.evaluate("document.body.dataset.liveEvents || 0"))
    height = market.mine(2)
    b.wait_until(f"document.getElementById('tip-height').textContent.trim() === {json.dumps(f'{height:,}')}",
                 timeout=30, what="the tip to update over SSE")
    assert b.evaluate("window.__same_page === true")            # updated in place, not reloaded
    assert int(b.evaluate("document.body.dataset.liveEvents")) > before
    assert int(text(b, label).split(" · ")[1].split()[0]) == left_before - 2


def check_docs_offline(b: Browser, market, run_dir) -> None:
    start = len(b.requested)
    b.open(f"{market.url}/docs")
    b.wait_until("document.querySelectorAll('.opblock').length > 10", what="Swagger UI to render the operations")
    assert b.evaluate("document.documentElement.outerHTML.includes('cdn.jsdelivr')") is False
    asked = b.requested[start:]
    assert f"{market.url}/docs/static/swagger-ui-bundle.js" in asked and f"{market.url}/openapi.json" in asked
    assert all(u.startswith((market.url, "data:")) for u in asked), asked
    b.screenshot(run_dir / "docs.png", whole_page=False)
