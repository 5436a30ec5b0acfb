"""Auctions on the custodial marketplace (the real cluster): bidders are buyers with
custodial balances funded on-chain; time moves by mining."""

from __future__ import annotations

import pytest

from harness.actors import Buyer, Party, Seller
from harness.actors_custodial import Account, list_custodial
from tests.reference_app.custodial_mode.conftest import market  # noqa: F401  (the custodial market fixture)

# Withdrawals ask the hub about a hash first; lnd logs "not yet" as an error.
NOT_INITIATED_LOG = pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated")


def bidder(market, name: str, deposit: int) -> tuple[Buyer, Account]:
    """A buyer with ``deposit`` sats available: buyer1/buyer2 have nodes, others only a bitcoind wallet."""
    if name in ("buyer1", "buyer2"):
        return market.funded_buyer(deposit, name)
    party = Buyer.register(market.http, name, ["buyer"], None, f"{len(name)} Auction Lane, Springfield")
    account = Account(party, market.cluster)
    account.deposit_onchain(deposit)
    return party, account


def open_auction(seller: Seller, price: int = 20_000, **terms) -> dict:
    listing = list_custodial(seller, f"auctioned item {price}", price, stock=1)
    body = {"listing_id": listing["id"], "start_price_sats": price, "reserve_sats": price,
            "min_increment_sats": 1_000, "duration_blocks": 20, "extend_blocks": 3, **terms}
    return seller.call("POST", "/auctions", json=body, expect=201)


def bid(party: Party, auction_id: int, amount: int, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return party.attempt("POST", f"/auctions/{auction_id}/bids", json={"amount_sats": amount}, headers=headers)


def height(market) -> int:
    return market.ctx.chain.getblockcount()
