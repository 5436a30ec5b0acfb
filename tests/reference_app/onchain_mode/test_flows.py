"""On-chain escrow end to end through the API, checked on node truth: release, refund,
each ruling, and the seller's timeout branch when the marketplace is gone."""

from __future__ import annotations

import pytest

from harness.chain_wallet import TimelockNotReached
from harness import actors_onchain as oc
from tests.reference_app.escrow.conftest import ADDRESSES

from .conftest import FEE, PRICE, TIMEOUT_BLOCKS

pytestmark = pytest.mark.cluster


def test_release_after_delivery_pays_seller_price_minus_commission_and_fee(market):
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    order = market.funded(buyer, bwallet, seller)
    seller.ship(order["id"], "fastship", "OC-1001")
    market.courier().deliver("OC-1001", ADDRESSES["buyer1"])
    market.mine(6)  # the dispute window ends
    buyer.wait_state(order["id"], "RELEASE_PENDING")

    view = market.settle(seller, swallet, order, "RELEASED")

    spend = view["spend"]
    assert (spend["kind"], spend["signer"], spend["fee_from"]) == ("release", "seller", "seller")
    assert market.paid_to(spend["txid"]) == {view["seller_address"]: PRICE - FEE - spend["fee_sats"],
                                             view["marketplace_address"]: FEE}
    assert 0 < spend["fee_sats"] < 2_000
    (outpoint,) = spend["inputs"]
    txid, vout = outpoint.split(":")
    assert market.ctx.chain.call("gettxout", txid, int(vout)) is None  # spent, by this release
    assert swallet.rpc.getaddressinfo(view["seller_address"])["ismine"]
    assert market.events(buyer, order) == ["escrow_opened", "funded", "ship", "delivered", "dispute_window_end",
                                           "released"]


def test_ship_timeout_refunds_the_buyer(market):
    buyer, bwallet = market.onchain_buyer()
    seller, _ = market.onchain_seller()
    order = market.funded(buyer, bwallet, seller)
    market.mine(6)  # the ship window closes, in blocks
    buyer.wait_state(order["id"], "REFUND_PENDING")

    view = market.settle(buyer, bwallet, order, "REFUNDED")

    assert market.paid_to(view["spend"]["txid"]) == {view["buyer_address"]: PRICE - view["spend"]["fee_sats"]}
    assert view["spend"]["signer"] == "buyer"


def _disputed(market):
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    arbiter = market.arbiter()
    order = market.funded(buyer, bwallet, seller)
    seller.ship(order["id"], "fastship", f"OC-D{order['id']}")
    buyer.call("POST", f"/orders/{order['id']}/dispute", json={"reason": "not as described"}, expect=201)
    return buyer, bwallet, seller, swallet, arbiter, order


@pytest.mark.parametrize("ruling, share", [("release", None), ("refund", None), ("split", 25), ("split", 70)])
def test_each_ruling_pays_what_it_says(market, ruling, share):
    buyer, bwallet, seller, swallet, arbiter, order = _disputed(market)
    arbiter.rule(order["id"], ruling, share)
    seller_gross = PRICE - PRICE * (share or 0) * 10_000 // 1_000_000 if ruling != "refund" else 0
    signer = {"release": "seller", "refund": "buyer"}.get(ruling) or (
        "seller" if seller_gross >= PRICE - seller_gross else "buyer")
    party, wallet = (seller, swallet) if signer == "seller" else (buyer, bwallet)
    final = {"release": "RELEASED", "refund": "REFUNDED", "split": "SPLIT"}[ruling]

    view = market.settle(party, wallet, order, final)

    spend = view["spend"]
    assert spend["signer"] == signer
    fee = spend["fee_sats"]
    commission = seller_gross * 10_000 // 1_000_000
    want = {view["seller_address"]: seller_gross - commission, view["marketplace_address"]: commission,
            view["buyer_address"]: PRICE - seller_gross}
    want[view[f"{signer}_address"]] -= fee
    assert market.paid_to(spend["txid"]) == {a: v for a, v in want.items() if v}
    if ruling == "split":
        assert buyer.order(order["id"])["fee_sats"] == commission


def test_marketplace_gone_seller_takes_the_timeout_branch_after_n_blocks(short_timeout_market):
    market = short_timeout_market
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    order = market.funded(buyer, bwallet, seller)
    seller.ship(order["id"], "fastship", "OC-T1")
    view = oc.escrow(seller, order["id"])  # all the seller needs: the descriptor, kept before the app goes
    assert view["timeout_height"] == market.ctx.chain.getblockcount() + TIMEOUT_BLOCKS
    market.worker.stop()  # the marketplace is gone for good

    with pytest.raises(TimelockNotReached, match="non-BIP68-final"):
        oc.timeout_spend(swallet, view)
    market.mine(TIMEOUT_BLOCKS - 2)
    with pytest.raises(TimelockNotReached):
        oc.timeout_spend(swallet, view)  # one block short: the spend would be in block N - 1
    market.mine(1)
    done = oc.timeout_spend(swallet, view)
    market.mine(1)

    assert market.ctx.chain.getrawtransaction(done.txid, True)["confirmations"] == 1
    (address, amount), = market.paid_to(done.txid).items()
    assert swallet.rpc.getaddressinfo(address)["ismine"] and amount == PRICE - done.spend.fee_sats
