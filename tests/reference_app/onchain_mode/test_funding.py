"""Funding as the chain shows it, through the app: paid too much, too little, twice, and a
reorg of the funding block that rolls the order back (I17)."""

from __future__ import annotations

import pytest

from harness import actors_onchain as oc

from .conftest import FEE, PRICE, wait_escrow

pytestmark = pytest.mark.cluster


def _release(market, buyer, seller, swallet, order):
    seller.ship(order["id"], "fastship", f"OC-F{order['id']}")
    buyer.confirm(order["id"])
    return market.settle(seller, swallet, order, "RELEASED")


def test_overpaid_escrow_returns_the_excess_to_the_buyer(market):
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    order = market.funded(buyer, bwallet, seller, PRICE + 7_000)
    assert oc.escrow(buyer, order["id"])["funding_status"] == "overpaid"

    view = _release(market, buyer, seller, swallet, order)

    assert market.paid_to(view["spend"]["txid"]) == {
        view["seller_address"]: PRICE - FEE - view["spend"]["fee_sats"], view["marketplace_address"]: FEE,
        view["buyer_address"]: 7_000}


def test_paid_twice_spends_both_and_returns_the_second_payment(market):
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    order = market.funded(buyer, bwallet, seller, PRICE, PRICE)
    funding = oc.escrow(buyer, order["id"])
    assert (funding["funding_status"], len(funding["utxos"]), funding["confirmed_sats"]) == ("double", 2, 2 * PRICE)

    view = _release(market, buyer, seller, swallet, order)

    assert sorted(view["spend"]["inputs"]) == sorted(f"{u['txid']}:{u['vout']}" for u in funding["utxos"])
    assert market.paid_to(view["spend"]["txid"])[view["buyer_address"]] == PRICE


def test_underpaid_escrow_expires_and_refunds_what_arrived(market):
    buyer, bwallet = market.onchain_buyer()
    seller, _ = market.onchain_seller()
    order = market.order(buyer, seller)
    oc.pay_escrow(buyer, bwallet, order["id"], PRICE - 50_000)
    market.mine(1)
    wait_escrow(buyer, order["id"], lambda v: v["funding_status"] == "underpaid", "the underpayment to confirm")
    assert buyer.order(order["id"])["state"] == "AWAITING_FUNDS"  # never funded on a partial payment (I9)
    market.mine(5)  # the funding window closes
    buyer.wait_state(order["id"], "EXPIRED")

    oc.sign_pending(buyer, bwallet, order["id"])
    view = oc.wait_broadcast(buyer, order["id"])
    market.mine(1)
    view = wait_escrow(buyer, order["id"], lambda v: v["spend"]["height"] is not None, "the refund to confirm")

    assert view["spend"]["kind"] == "refund"
    assert market.paid_to(view["spend"]["txid"]) == {view["buyer_address"]: PRICE - 50_000 - view["spend"]["fee_sats"]}
    assert buyer.order(order["id"])["state"] == "EXPIRED"


def test_underpaid_then_topped_up_is_funded(market):
    buyer, bwallet = market.onchain_buyer()
    seller, _ = market.onchain_seller()
    order = market.order(buyer, seller)
    oc.pay_escrow(buyer, bwallet, order["id"], PRICE - 50_000)
    market.mine(1)
    wait_escrow(buyer, order["id"], lambda v: v["funding_status"] == "underpaid", "the underpayment to confirm")
    oc.pay_escrow(buyer, bwallet, order["id"], 50_000)
    market.mine(1)
    buyer.wait_state(order["id"], "FUNDED")
    assert oc.escrow(buyer, order["id"])["funding_status"] == "double"


def test_reorg_of_the_funding_block_rolls_the_order_back_until_it_confirms_again(market):
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    order = market.order(buyer, seller)
    oc.pay_escrow(buyer, bwallet, order["id"], PRICE)
    market.mine(1)
    buyer.wait_state(order["id"], "FUNDED")
    chain = market.ctx.chain
    block = chain.getbestblockhash()
    try:
        chain.invalidateblock(block)  # the funding goes back to the mempool
        market.worker.wake()
        buyer.wait_state(order["id"], "AWAITING_FUNDS")
        r = seller.attempt("POST", f"/orders/{order['id']}/ship",
                           json={"courier": "fastship", "tracking_number": "OC-R1"})
        assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")  # no shipment on lost funding
    finally:
        chain.reconsiderblock(block)
        market.cluster.wait_synced()
    market.worker.wake()
    buyer.wait_state(order["id"], "FUNDED")
    assert market.events(buyer, order) == ["escrow_opened", "funded", "funding_reorged", "funded"]

    _release(market, buyer, seller, swallet, order)
