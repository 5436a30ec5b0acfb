"""Secrets never reach the logs. A full hold-invoice trade runs through the app
in-process with every logger at DEBUG (the app's own, uvicorn's, httpx's,
sqlalchemy's), along with the account flows that hand out secrets; then the
captured records are searched for each secret the run handled: the preimage,
the app's keys and seed, passwords, TOTP seeds, the bound macaroon, JWTs and
webhook secrets. Node logs are out of scope (lnd logs its own invoices)."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.reference_app.escrow.conftest import local_sats, open_market, release_holds
from regtest_cluster.waiting import wait_for
from harness.world import ADDRESSES

pytestmark = pytest.mark.cluster

PRICE = 21_000


def secrets_of_run(market, buyer, seller, order, extra: dict[str, str]) -> dict[str, str]:
    settings = market.ctx.settings
    invoice = market.ctx.hub.lookup_invoice(bytes.fromhex(order["hold"]["payment_hash"]))
    found = {
        "preimage (hex)": base64.b64decode(invoice["r_preimage"]).hex(),
        "preimage (base64)": invoice["r_preimage"],
        "arbiter_seed": settings.arbiter_seed,
        "secret_key": settings.secret_key,
        "buyer password": buyer.password, "seller password": seller.password,
        "admin password": settings.bootstrap_admin_password,
        "buyer JWT": buyer.token, "seller JWT": seller.token,
        "seller invoice macaroon": (seller.node.macaroon_path.parent / "invoice.macaroon").read_bytes().hex(),
        **{f"encryption key {i}": k for i, k in enumerate(settings.encryption_keys)},
        **{f"courier secret {n}": s for n, s in settings.courier_secrets.items()},
        **extra,
    }
    assert invoice["state"] == "SETTLED"
    return found


def test_trade_logs_no_secret(cluster, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # the root logger and so every library's
    with open_market(cluster, tmp_path, run_market_loop=False) as market:
        buyer, seller, courier = market.buyer(), market.seller(), market.courier()
        before = local_sats(seller.node)
        order = market.funded_order(buyer, seller, PRICE)
        seller.ship(order["id"], "fastship", "FS-SECRET-1")
        courier.deliver("FS-SECRET-1", ADDRESSES["buyer1"])
        market.mine(6)
        final = buyer.wait_state(order["id"], "RELEASED")
        assert final["payouts"][0]["status"] == "SUCCEEDED"
        # the hub reports the payment before the seller's side of the commitment dance is done
        wait_for(lambda: local_sats(seller.node) > before, timeout=30, what="the payout in the seller's channel")

        totp = buyer.call("POST", "/auth/totp/enrol")["secret"]
        hook = seller.call("POST", "/me/webhooks", json={"url": "http://127.0.0.1:9/hook"}, expect=201)["secret"]
        refresh = market.http.post("/auth/login", json={"email": buyer.email, "password": buyer.password})
        market.http.post("/auth/login", json={"email": buyer.email, "password": "a-wrong-password"})
        secrets = secrets_of_run(market, buyer, seller, order, {
            "TOTP seed": totp, "webhook secret": hook, "refresh JWT": refresh.json()["refresh_token"]})
        release_holds(market)

    records = [f"{r.name}: {r.getMessage()}" for r in caplog.records]
    assert len(records) > 20, "the run logged something to search"
    leaks = {name: line for name, value in secrets.items() for line in records if value and value in line}
    assert not leaks, f"secrets in the logs: {leaks}"
