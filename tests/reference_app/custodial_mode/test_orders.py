"""Orders paid from custodial balances, through the HTTP API on the real cluster:
every outcome is one ledger transfer, and the ledger reconciles with the nodes."""

from __future__ import annotations

import pytest

from harness.actors_custodial import list_custodial
from tests.reference_app.custodial_mode.conftest import CustodialMarket
from tests.reference_app.escrow.conftest import ADDRESSES

# Before reserving, a withdrawal asks the hub whether it ever paid this hash; lnd logs "not yet" as an error.
NOT_INITIATED_LOG = pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated")
pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]
DEPOSIT, PRICE = 100_000, 20_000
FEE = PRICE * 10_000 // 1_000_000  # the default 1 % commission


def assert_reconciled(market: CustodialMarket) -> dict:
    report = market.reconcile()
    assert report["ok"], report["mismatches"]
    return report["totals"]


def events(party, order_id: int) -> list[str]:
    return [e["event"] for e in party.call("GET", f"/orders/{order_id}/events")]


def test_release_after_delivery_credits_seller_and_fee_then_seller_withdraws(market):
    buyer, buyer_account = market.funded_buyer(DEPOSIT)
    seller = market.seller(bind=False)
    seller_account = market.account(seller)

    order = market.custodial_order(buyer, seller, PRICE)
    assert (order["state"], order["escrow_mode"], order["hold"]) == ("FUNDED", "custodial", None)
    wallet = buyer_account.wallet()
    assert (wallet["available_sats"], wallet["held_sats"]) == (DEPOSIT - PRICE, PRICE)
    seller.ship(order["id"], "fastship", "FS-1001")
    assert market.courier().deliver("FS-1001", ADDRESSES["buyer1"])["state"] == "DELIVERED"
    market.mine(6)  # the dispute window ends
    buyer.wait_state(order["id"], "RELEASED")

    assert events(buyer, order["id"]) == ["escrow_opened", "funded", "ship", "delivered", "dispute_window_end",
                                          "released"]
    buyer_account.wait_balance(available_sats=DEPOSIT - PRICE, held_sats=0)
    seller_account.wait_balance(available_sats=PRICE - FEE, held_sats=0, inflight_sats=0)
    postings = market.ledger()["orders"][str(order["id"])]
    assert sorted(map(tuple, postings["outcome"])) == sorted([
        (f"user:{buyer.id}:held", -PRICE), (f"user:{seller.id}:available", PRICE - FEE), ("sys:fees", FEE)])

    paid = seller_account.withdraw_ln(15_000)
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert (body["status"], body["amount_sats"], body["fee_limit_sats"]) == ("SUCCEEDED", 15_000, 150)
    node = market.cluster.node("seller1").rest.lookup_invoice(bytes.fromhex(body["payment_hash"]))
    assert node["state"] == "SETTLED"
    seller_account.wait_balance(available_sats=PRICE - FEE - 15_000 - body["fee_sats"], inflight_sats=0)
    totals = assert_reconciled(market)
    assert (totals["fees"], totals["users_held"], totals["users_inflight"]) == (FEE, 0, 0)


def test_order_beyond_balance_is_refused_and_undone(market):
    buyer, account = market.funded_buyer(15_000, "buyer2")
    seller = market.seller("seller2", bind=False)
    listing = list_custodial(seller, "too dear", PRICE, stock=1)
    refused = buyer.attempt("POST", "/orders", json={"listing_id": listing["id"]})
    assert refused.status_code == 409
    assert refused.json()["code"] == "insufficient_funds"
    assert "needs 20000" in refused.json()["detail"]
    assert buyer.call("GET", f"/listings/{listing['id']}")["stock"] == 1  # the reservation was undone
    assert buyer.call("GET", "/orders")["total"] == 0
    assert account.wallet()["available_sats"] == 15_000
    assert_reconciled(market)


def test_ship_timeout_refunds_buyer_balance(market):
    buyer, account = market.funded_buyer(DEPOSIT)
    seller = market.seller(bind=False)
    order = market.custodial_order(buyer, seller, PRICE)
    market.mine(6)  # the ship window closes, in blocks
    buyer.wait_state(order["id"], "REFUNDED")
    assert events(buyer, order["id"])[-2:] == ["ship_timeout", "refunded"]
    account.wait_balance(available_sats=DEPOSIT, held_sats=0)
    assert market.account(seller).wallet()["total_sats"] == 0
    assert assert_reconciled(market)["fees"] == 0


@pytest.mark.parametrize("ruling,share", [("release", None), ("refund", None), ("split", 40)])
def test_dispute_ruling_moves_the_hold_by_the_rules(market, ruling, share):
    buyer, account = market.funded_buyer(DEPOSIT, "buyer2")
    seller, arbiter = market.seller("seller2", bind=False), market.arbiter()
    order = market.custodial_order(buyer, seller, PRICE)
    seller.ship(order["id"], "slowpost", "SP-2001")
    buyer.call("POST", f"/orders/{order['id']}/dispute", json={"reason": "not as described"}, expect=201)
    market.mine(12)  # a dispute freezes automatic release and refund
    assert buyer.order(order["id"])["state"] == "DISPUTED"
    arbiter.rule(order["id"], ruling, share)
    final = buyer.wait_state(order["id"], {"release": "RELEASED", "refund": "REFUNDED", "split": "SPLIT"}[ruling])

    buyer_part = {"release": 0, "refund": PRICE, "split": PRICE * 40 // 100}[ruling]
    seller_gross = PRICE - buyer_part
    fee = seller_gross * 10_000 // 1_000_000
    assert final["fee_sats"] == (fee if ruling == "split" else FEE)
    account.wait_balance(available_sats=DEPOSIT - PRICE + buyer_part, held_sats=0)
    assert market.account(seller).wallet()["available_sats"] == seller_gross - fee
    assert assert_reconciled(market)["fees"] == fee
