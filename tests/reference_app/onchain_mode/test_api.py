"""The on-chain escrow's API: binding keys, opening an escrow, and the PSBT hand-over's checks."""

from __future__ import annotations

import pytest

from harness import actors_onchain as oc
from harness.actors import Buyer, Seller

from .conftest import PRICE, awaiting_psbt

pytestmark = pytest.mark.cluster


def test_bind_keys_rejects_a_bad_key_naming_the_field(market):
    buyer, wallet = market.onchain_buyer()
    good = wallet.key()
    bad_curve = good[:-64] + "f" * 64  # the right shape, but no point on the curve
    r = buyer.attempt("PUT", "/me/onchain-keys", json={"key": bad_curve})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "validation_failed", "key")
    assert "bitcoind says" in r.json()["detail"]
    r = buyer.attempt("PUT", "/me/onchain-keys", json={"key": good, "timeout_key": "02" + "ab" * 32})
    assert (r.status_code, r.json()["field"]) == (422, "timeout_key")
    assert "[fingerprint/path]pubkey" in r.json()["detail"]
    r = buyer.attempt("PUT", "/me/onchain-keys", json={"key": good, "timeout_key": good})
    assert (r.status_code, r.json()["field"]) == (422, "timeout_key")
    assert "second key" in r.json()["detail"]


def test_bind_keys_returns_the_payout_address_of_the_key(market):
    seller = Seller.register(market.http, "seller1", ["seller"], market.cluster.node("seller1"))
    wallet = market.wallet("seller")
    bound = oc.bind_keys(seller, wallet, seller=True)
    assert bound["timeout_key"] and bound["timeout_key"] != bound["key"]
    assert wallet.rpc.getaddressinfo(bound["payout_address"])["ismine"] is True


def test_order_without_bound_keys_is_refused_and_undone(market):
    buyer = Buyer.register(market.http, "buyer1", ["buyer"], market.cluster.node("buyer1"), "1 Main Street, Springfield")
    seller, _ = market.onchain_seller()
    listing = oc.list_item(seller, "lamp", PRICE, stock=1)
    r = buyer.attempt("POST", "/orders", json={"listing_id": listing["id"]})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "validation_failed", "onchain_keys")
    assert "the buyer's key" in r.json()["detail"]
    assert seller.call("GET", f"/listings/{listing['id']}")["stock"] == 1  # the reservation was undone
    assert buyer.call("GET", "/orders")["total"] == 0


def test_seller_without_timeout_key_cannot_take_onchain_orders(market):
    buyer, _ = market.onchain_buyer()
    seller = Seller.register(market.http, "seller1", ["seller"], market.cluster.node("seller1"))
    oc.bind_keys(seller, market.wallet("seller"))
    r = buyer.attempt("POST", "/orders", json={"listing_id": oc.list_item(seller, "lamp", PRICE)["id"]})
    assert r.status_code == 422 and "the seller's timeout_key" in r.json()["detail"]


def test_escrow_view_shows_address_and_amount_to_parties_only(market):
    buyer, _ = market.onchain_buyer()
    seller, _ = market.onchain_seller()
    order = market.order(buyer, seller)
    assert order["state"] == "AWAITING_FUNDS"
    view = oc.escrow(buyer, order["id"])
    assert view["address"].startswith("bcrt1q") and len(view["address"]) == 64  # P2WSH
    assert (view["amount_sats"], view["funding_status"], view["spend"]) == (PRICE, "none", None)
    timeout = market.ctx.settings.onchain_timeout_blocks
    assert f"older({timeout})" in view["descriptor"] and view["timeout_height"] is None
    assert oc.escrow(seller, order["id"])["address"] == view["address"]
    stranger = Buyer.register(market.http, "buyer2", ["buyer"], market.cluster.node("buyer2"), "22 Elm Road")
    assert stranger.attempt("GET", f"/orders/{order['id']}/escrow").status_code == 404  # as if there were none
    r = buyer.attempt("GET", f"/orders/{order['id']}/psbt")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_psbt_from_the_wrong_party_or_for_another_tx_is_refused(market):
    buyer, bwallet = market.onchain_buyer()
    seller, swallet = market.onchain_seller()
    order = market.funded(buyer, bwallet, seller)
    seller.ship(order["id"], "fastship", f"FS-{order['id']}")
    buyer.confirm(order["id"])
    pending = awaiting_psbt(seller, order["id"])
    assert (pending["kind"], pending["signer"]) == ("release", "seller")
    r = buyer.attempt("GET", f"/orders/{order['id']}/psbt")
    assert r.status_code == 404 and "waits for the seller" in r.json()["detail"]

    other = bwallet.rpc.walletcreatefundedpsbt([], [{bwallet.rpc.getnewaddress(): "0.001"}], {})["psbt"]
    r = seller.attempt("POST", f"/orders/{order['id']}/psbt", json={"psbt": other})
    assert (r.status_code, r.json()["field"]) == (422, "psbt")
    assert "another transaction" in r.json()["detail"]
    r = seller.attempt("POST", f"/orders/{order['id']}/psbt", json={"psbt": pending["psbt"]})
    assert r.status_code == 422 and "carry no signature of your escrow key" in r.json()["detail"]
    r = seller.attempt("POST", f"/orders/{order['id']}/psbt", json={"psbt": "not a psbt at all"})
    assert (r.status_code, r.json()["field"]) == (422, "psbt")
    r = buyer.attempt("POST", f"/orders/{order['id']}/psbt", json={"psbt": bwallet.sign(pending["psbt"])})
    assert r.status_code == 404  # the buyer's signature is not the one this release waits for

    seller.call("POST", f"/orders/{order['id']}/psbt", json={"psbt": swallet.sign(pending["psbt"])})
    oc.wait_broadcast(seller, order["id"])
    market.mine(1)
    seller.wait_state(order["id"], "RELEASED")


@pytest.mark.parametrize("address_type, why", [("legacy", "legacy pkh() key (BIP44)"),
                                               ("p2sh-segwit", "nested SegWit sh(wpkh()) key (BIP49)")])
def test_bind_keys_refuses_a_key_whose_payout_the_wallet_would_not_show(market, address_type, why):
    buyer, wallet = market.onchain_buyer()
    desc = wallet.rpc.getaddressinfo(wallet.rpc.getnewaddress("", address_type))["desc"]
    key = desc[desc.index("["):desc.index(")")]  # pkh([fp/44h/...]pub)#c or sh(wpkh([fp/49h/...]pub))#c
    r = buyer.attempt("PUT", "/me/onchain-keys", json={"key": key})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "validation_failed", "key")
    assert r.json()["detail"].startswith(f"key is a {why}: escrow releases and refunds pay you to wpkh(key)")
