"""The main job's story: three orders on the hub topology, one released, one
refunded, one disputed and split, with every party's balance change read from
LND next to the amount the rules say it should be."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from reference_app.config import Settings
from reference_app.main import build_context, create_app
from reference_app.serve import ServedApp
from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.lnd import LndRest
from regtest_cluster.waiting import wait_for
from scenarios.actors import Arbiter, Buyer, Courier, Party, Seller

log = logging.getLogger("escrowlab.demo")
ADDRESSES = {"buyer1": "1 Main Street, Springfield", "buyer2": "22 Elm Road, Shelbyville"}
WINDOWS = dict(funding_timeout_blocks=6, ship_window_blocks=6, delivery_window_blocks=6,
               dispute_window_blocks=6, ruling_window_blocks=500, worker_interval_s=0.1)
NODES = ("buyer1", "buyer2", "hub", "seller1", "seller2")


def local_sats(cluster: Cluster, name: str) -> int:
    return int(cluster.node(name).rest.channelbalance()["local_balance"]["sat"])


def run(cluster: Cluster, data_dir: Path, step=lambda _m: None) -> dict:
    settings = Settings(environment="development", data_dir=data_dir, **WINDOWS,
                        bootstrap_admin_email="admin@example.com", bootstrap_admin_password="demo-admin-password")
    ctx = build_context(settings, with_node=False)
    hub = cluster.node("hub")
    ctx.hub = LndRest("hub", hub.rest_url, hub.macaroon_path.read_bytes().hex(), hub.tls_cert)
    fee_ppm = ctx.settings.fee_ppm
    with ServedApp(create_app(ctx=ctx)) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        step(f"marketplace serving on {served.url}")
        admin = Party(http, settings.bootstrap_admin_email, ["admin"], password=settings.bootstrap_admin_password)
        admin.login()
        arbiter = Arbiter.register(http, "arbiter", ["buyer"])
        admin.call("POST", f"/admin/users/{arbiter.id}/roles", json={"role": "arbiter", "grant": True})
        sellers = {n: Seller.register(http, n, ["seller"], cluster.node(n)) for n in ("seller1", "seller2")}
        buyers = {n: Buyer.register(http, n, ["buyer"], cluster.node(n), ADDRESSES[n]) for n in ("buyer1", "buyer2")}
        for party in (*sellers.values(), buyers["buyer2"]):
            party.bind_payout_node()
        courier = Courier(http, "fastship", ctx.settings.courier_secrets["fastship"])
        before = {n: local_sats(cluster, n) for n in NODES}

        def place(buyer: str, seller: str, price: int, title: str) -> dict:
            listing = sellers[seller].list_item(title, price)
            order = buyers[buyer].buy(listing["id"])
            buyers[buyer].pay(order)
            return buyers[buyer].wait_state(order["id"], "FUNDED")

        step("three buyers' payments are held by the hub (hold invoices ACCEPTED)")
        released = place("buyer1", "seller1", 25_000, "mechanical keyboard")
        refunded = place("buyer2", "seller2", 40_000, "vintage camera")
        split = place("buyer2", "seller1", 30_000, "road bike helmet")

        step("seller1 ships two orders; the courier confirms one delivery; buyer2 disputes the other")
        sellers["seller1"].ship(released["id"], "fastship", "FS-DEMO-1")
        sellers["seller1"].ship(split["id"], "fastship", "FS-DEMO-2")
        courier.deliver("FS-DEMO-1", ADDRESSES["buyer1"])
        buyers["buyer2"].call("POST", f"/orders/{split['id']}/dispute",
                              json={"reason": "the helmet arrived cracked"}, expect=201)

        step("6 blocks pass: the dispute window closes (release) and seller2's ship window closes (refund)")
        cluster.mine(6)
        buyers["buyer1"].wait_state(released["id"], "RELEASED")
        buyers["buyer2"].wait_state(refunded["id"], "REFUNDED")

        step("the arbiter splits the disputed order: 40 % back to the buyer")
        arbiter.call("POST", f"/orders/{split['id']}/dispute/ruling", json={"ruling": "split", "buyer_share_pct": 40})
        buyers["buyer2"].wait_state(split["id"], "SPLIT")

        fee1 = 25_000 * fee_ppm // 1_000_000
        buyer_part = 30_000 * 40 // 100
        fee3 = (30_000 - buyer_part) * fee_ppm // 1_000_000
        expected = {"buyer1": -25_000, "buyer2": -30_000 + buyer_part, "hub": fee1 + fee3,
                    "seller1": (25_000 - fee1) + (30_000 - buyer_part - fee3), "seller2": 0}
        step("reading every node's channel balance from LND")
        try:
            wait_for(lambda: all(local_sats(cluster, n) - before[n] == expected[n] for n in NODES),
                     timeout=20, what="balances to settle")
        except TimeoutError:
            pass  # reported below, node truth against the rules
        actual = {n: local_sats(cluster, n) - before[n] for n in NODES}
        orders = [{"id": o["id"], "outcome": buyers["buyer1" if o is released else "buyer2"].order(o["id"])["state"],
                   "price_sats": o["price_sats"]} for o in (released, refunded, split)]
    ctx.hub.close()
    ctx.db.dispose()
    return {"orders": orders,
            "balances": [{"node": n, "expected_delta_sats": expected[n], "lnd_delta_sats": actual[n],
                          "ok": expected[n] == actual[n]} for n in NODES],
            "ok": all(expected[n] == actual[n] for n in NODES)}
