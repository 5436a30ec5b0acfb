"""Hold-invoice escrow end to end on the real cluster, checked on node truth."""

from __future__ import annotations

import pytest

from tests.reference_app.escrow.conftest import ADDRESSES, local_sats, wait_balances

pytestmark = pytest.mark.cluster
# A cancelled hold fails the buyer's payment back; the buyer's lnd logs that as an error.
REFUND_LOG = pytest.mark.allow_log(r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")
PRICE = 20_000
FEE = PRICE * 10_000 // 1_000_000  # the default 1 % commission


def nodes_of(market, *names):
    return {n: market.cluster.node(n) for n in names}


def test_release_happy_path_pays_seller_price_minus_fee(market):
    buyer, seller, courier = market.buyer(), market.seller(), market.courier()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}

    order = market.funded_order(buyer, seller, PRICE)
    assert market.invoice_state(order) == "ACCEPTED"
    seller.ship(order["id"], "fastship", "FS-1001")
    assert courier.deliver("FS-1001", ADDRESSES["buyer1"])["state"] == "DELIVERED"
    market.mine(6)  # the dispute window ends
    final = buyer.wait_state(order["id"], "RELEASED")

    assert market.invoice_state(order) == "SETTLED"
    assert market.payment_outcome(order) == "SUCCEEDED"
    assert [(p["beneficiary"], p["amount_sats"], p["status"]) for p in final["payouts"]] == \
        [("seller", PRICE - FEE, "SUCCEEDED")]
    wait_balances(nodes, before, {"buyer1": -PRICE, "hub": FEE, "seller1": PRICE - FEE})
    events = [e["event"] for e in buyer.call("GET", f"/orders/{order['id']}/events")]
    assert events == ["invoice_issued", "funded", "ship", "delivered", "dispute_window_end", "released"]


def test_confirm_early_releases_before_delivery(market):
    buyer, seller = market.buyer("buyer2"), market.seller("seller2")
    order = market.funded_order(buyer, seller, PRICE)
    seller.ship(order["id"], "slowpost", "SP-2001")
    buyer.confirm(order["id"])
    final = buyer.wait_state(order["id"], "RELEASED")
    assert final["payouts"][0]["status"] == "SUCCEEDED"
    assert market.invoice_state(order) == "SETTLED"


@REFUND_LOG
def test_ship_timeout_cancels_hold_and_refunds_buyer(market):
    buyer, seller = market.buyer(), market.seller()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}
    order = market.funded_order(buyer, seller, PRICE)
    market.mine(6)  # the ship window closes, in blocks
    final = buyer.wait_state(order["id"], "REFUNDED")
    assert market.invoice_state(order) == "CANCELED"
    assert market.payment_outcome(order) == "FAILED"
    assert final["payouts"] == []
    wait_balances(nodes, before, {"buyer1": 0, "hub": 0, "seller1": 0})


def _disputed(market, buyer, seller, by="buyer"):
    order = market.funded_order(buyer, seller, PRICE)
    seller.ship(order["id"], "fastship", f"FS-{order['id']}-{by}")
    party = buyer if by == "buyer" else seller
    party.call("POST", f"/orders/{order['id']}/dispute", json={"reason": "item not as described"}, expect=201)
    party.call("POST", f"/orders/{order['id']}/dispute/messages", json={"body": "photos attached"}, expect=201)
    return buyer.wait_state(order["id"], "DISPUTED")


def test_dispute_ruling_release_pays_seller(market):
    buyer, seller, arbiter = market.buyer(), market.seller(), market.arbiter()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}
    order = _disputed(market, buyer, seller, by="seller")
    market.mine(12)  # a dispute freezes the dispute-window and delivery timers (I12)
    assert buyer.order(order["id"])["state"] == "DISPUTED"
    arbiter.rule(order["id"], "release")
    buyer.wait_state(order["id"], "RELEASED")
    wait_balances(nodes, before, {"buyer1": -PRICE, "hub": FEE, "seller1": PRICE - FEE})
    dispute = buyer.call("GET", f"/orders/{order['id']}/dispute")
    assert dispute["ruling"] == "release" and dispute["messages"][0]["body"] == "photos attached"


@REFUND_LOG
def test_dispute_ruling_refund_cancels_hold(market):
    buyer, seller, arbiter = market.buyer(), market.seller(), market.arbiter()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}
    order = _disputed(market, buyer, seller)
    arbiter.rule(order["id"], "refund")
    buyer.wait_state(order["id"], "REFUNDED")
    assert market.invoice_state(order) == "CANCELED"
    assert market.payment_outcome(order) == "FAILED"
    wait_balances(nodes, before, {"buyer1": 0, "hub": 0, "seller1": 0})


def test_dispute_ruling_split_pays_both_from_the_hub(market):
    buyer, seller, arbiter = market.buyer(), market.seller(), market.arbiter()
    buyer.bind_payout_node()
    nodes = nodes_of(market, "buyer1", "hub", "seller1")
    before = {n: local_sats(node) for n, node in nodes.items()}
    order = _disputed(market, buyer, seller)
    arbiter.rule(order["id"], "split", buyer_share_pct=30)
    final = buyer.wait_state(order["id"], "SPLIT")
    buyer_part = PRICE * 30 // 100
    seller_fee = (PRICE - buyer_part) * 10_000 // 1_000_000
    paid = {p["beneficiary"]: p["amount_sats"] for p in final["payouts"]}
    assert paid == {"buyer": buyer_part, "seller": PRICE - buyer_part - seller_fee}
    assert market.invoice_state(order) == "SETTLED"
    wait_balances(nodes, before, {"buyer1": -PRICE + buyer_part, "hub": seller_fee,
                                  "seller1": PRICE - buyer_part - seller_fee})


@REFUND_LOG  # teardown cancels the hold this test leaves disputed
def test_arbiter_who_is_a_party_cannot_rule(market):
    buyer, seller = market.buyer(), market.seller()
    market.admin.call("POST", f"/admin/users/{buyer.id}/roles", json={"role": "arbiter", "grant": True})
    order = _disputed(market, buyer, seller)
    response = buyer.attempt("POST", f"/orders/{order['id']}/dispute/ruling", json={"ruling": "refund"})
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert buyer.order(order["id"])["state"] == "DISPUTED"
