"""Escrow under time pressure, races and node failures, on the real cluster."""

from __future__ import annotations

import threading

import pytest

from reference_app.services.transitions import lock_horizon
from reference_app.worker import Worker
from regtest_cluster.waiting import wait_for
from tests.reference_app.escrow.conftest import local_sats, wait_balances
from tests.reference_app.escrow.test_ln_hold import FEE, PRICE, REFUND_LOG, _disputed, nodes_of

pytestmark = pytest.mark.cluster


def _mine_to(market, height: int) -> None:
    market.mine(height - market.cluster.bitcoind.rpc.getblockcount())


def test_guardian_settles_disputed_order_into_custody_then_ruling_pays_out(market):
    buyer, seller, arbiter = market.buyer(), market.seller(), market.arbiter()
    buyer.bind_payout_node()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}
    order = _disputed(market, buyer, seller)
    horizon = lock_horizon(market.ctx.settings, order["hold"]["htlc_expiry_height"])
    assert horizon > market.cluster.bitcoind.rpc.getblockcount()

    _mine_to(market, horizon - 1)
    assert buyer.order(order["id"])["state"] == "DISPUTED"  # a dispute alone never times out into a refund
    _mine_to(market, horizon)
    custody = buyer.wait_state(order["id"], "HELD_IN_CUSTODY")
    wait_for(lambda: market.invoice_state(order) == "SETTLED", timeout=20, what="hold settled into custody")
    assert custody["hold"]["lnd_state"] in ("ACCEPTED", "SETTLED")
    kinds = {n["kind"] for n in seller.call("GET", "/me/notifications")["items"]}
    assert "order.held_in_custody" in kinds  # both parties are told (I18)

    arbiter.rule(order["id"], "refund")
    buyer.wait_state(order["id"], "REFUNDED")
    assert market.payment_outcome(order) == "SUCCEEDED"  # settled, then repaid from custody
    wait_balances(nodes, before, {"buyer1": 0, "hub": 0, "seller1": 0})


@REFUND_LOG
def test_guardian_cancels_unshipped_order_when_worker_was_down(market):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, PRICE)
    market.worker.stop()  # the operator's worker is down while blocks pass
    horizon = lock_horizon(market.ctx.settings, order["hold"]["htlc_expiry_height"])
    _mine_to(market, horizon)
    assert market.invoice_state(order) == "ACCEPTED"  # lnd has not cancelled it yet: the margin held

    worker = Worker(market.ctx)
    worker.start()
    try:
        buyer.wait_state(order["id"], "REFUNDED")
    finally:
        worker.stop()
    events = [e["event"] for e in buyer.call("GET", f"/orders/{order['id']}/events")]
    assert "guardian_cancel" in events
    assert market.payment_outcome(order) == "FAILED"


@REFUND_LOG
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_release_and_refund_exactly_one_wins(market, round_):
    buyer, seller = market.buyer(), market.seller()
    arbiters = [market.arbiter("arb-a"), market.arbiter("arb-b")]
    order = _disputed(market, buyer, seller)
    results: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def rule(arbiter, ruling):
        barrier.wait()
        results[ruling] = arbiter.attempt("POST", f"/orders/{order['id']}/dispute/ruling",
                                          json={"ruling": ruling}).status_code

    threads = [threading.Thread(target=rule, args=(a, r)) for a, r in zip(arbiters, ("release", "refund"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200, 409], results
    winner = "RELEASED" if results["release"] == 200 else "REFUNDED"
    buyer.wait_state(order["id"], winner)
    assert market.invoice_state(order) == ("SETTLED" if winner == "RELEASED" else "CANCELED")
    assert market.payment_outcome(order) == ("SUCCEEDED" if winner == "RELEASED" else "FAILED")


@pytest.mark.fresh_cluster
# Stopping a node on purpose makes peers log connection, link, routing and
# chain-notifier errors; the outcome is asserted on node truth (balances) instead.
@pytest.mark.allow_log(r"\[ERR\] (CMGR|PEER|SRVR|HSWC|CRTR|NTFN|DISC|RPCS):")
def test_payout_retried_after_seller_node_restarts(market):
    buyer, seller = market.buyer(), market.seller()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}
    order = market.funded_order(buyer, seller, PRICE)
    seller.ship(order["id"], "fastship", "FS-RESTART")
    market.cluster.stop_node("seller1")
    buyer.confirm(order["id"])

    def payout_waiting() -> dict | None:
        o = buyer.order(order["id"])
        return o if o["payouts"] and o["payouts"][0]["last_error"] else None

    stuck = wait_for(payout_waiting, timeout=30, what="a payout attempt that failed on the offline seller")
    assert stuck["state"] == "RELEASE_PENDING" and stuck["payouts"][0]["status"] != "SUCCEEDED"
    assert market.invoice_state(order) == "SETTLED"  # settled first; the marketplace now owes the seller

    market.cluster.start_node("seller1")
    final = buyer.wait_state(order["id"], "RELEASED", timeout=60)
    assert final["payouts"][0]["status"] == "SUCCEEDED"
    wait_balances(nodes, before, {"buyer1": -PRICE, "hub": FEE, "seller1": PRICE - FEE})
