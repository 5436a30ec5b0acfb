"""The marketplace with on-chain multisig escrow, on the session's shared cluster: the app's
bitcoind is the cluster's, and each party signs in a descriptor wallet of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import pytest

from regtest_cluster.nodes.bitcoind import sats
from regtest_cluster.waiting import wait_for
from harness import actors_onchain as oc
from harness.actors import Buyer, Party, Seller
from tests.reference_app.escrow.conftest import ADDRESSES, Market, open_market

PRICE = 200_000
FEE = PRICE * 10_000 // 1_000_000  # the default 1 % commission
TIMEOUT_BLOCKS = 12                # small, so the timeout test mines little


@dataclass
class ChainMarket(Market):
    wallets: list = field(default_factory=list)

    def wallet(self, role: str, fund_sats: int = 0) -> oc.ChainWallet:
        wallet = oc.ChainWallet.create(self.cluster, role, fund_sats)
        self.wallets.append(wallet)
        return wallet

    def onchain_buyer(self, node: str = "buyer1") -> tuple[Buyer, oc.ChainWallet]:
        buyer = Buyer.register(self.http, node, ["buyer"], self.cluster.node(node), ADDRESSES[node])
        wallet = self.wallet("buyer", 2_000_000)
        oc.bind_keys(buyer, wallet)
        return buyer, wallet

    def onchain_seller(self, node: str = "seller1") -> tuple[Seller, oc.ChainWallet]:
        seller = Seller.register(self.http, node, ["seller"], self.cluster.node(node))
        wallet = self.wallet("seller")
        oc.bind_keys(seller, wallet, seller=True)
        return seller, wallet

    def order(self, buyer: Buyer, seller: Seller, price: int = PRICE) -> dict:
        listing = oc.list_item(seller, f"item {price}", price)
        return buyer.buy(listing["id"])

    def funded(self, buyer: Buyer, wallet: oc.ChainWallet, seller: Seller, *amounts: int) -> dict:
        order = self.order(buyer, seller)
        oc.pay_escrow(buyer, wallet, order["id"], *(amounts or (PRICE,)))
        self.mine(1)
        return buyer.wait_state(order["id"], "FUNDED")

    def settle(self, party: Party, wallet: oc.ChainWallet, order: dict, final: str) -> dict:
        """The party signs the spend awaiting it; one block confirms it; the order ends ``final``."""
        oc.sign_pending(party, wallet, order["id"])
        view = oc.wait_broadcast(party, order["id"])
        self.mine(1)
        party.wait_state(order["id"], final)
        return view

    def paid_to(self, txid: str) -> dict[str, int]:
        """Node truth: what a transaction pays, by address."""
        tx = self.ctx.chain.getrawtransaction(txid, True)
        return {o["scriptPubKey"]["address"]: sats(o["value"]) for o in tx["vout"]}

    def events(self, party: Party, order: dict) -> list[str]:
        return [e["event"] for e in party.call("GET", f"/orders/{order['id']}/events")]


def wait_escrow(party: Party, order_id: int, condition, what: str, timeout: float = 30) -> dict:
    return oc.wait_escrow(party, order_id, condition, what, timeout)


def awaiting_psbt(party: Party, order_id: int, timeout: float = 30) -> dict:
    def asked():
        response = party.attempt("GET", f"/orders/{order_id}/psbt")
        return response.json() if response.status_code == 200 else None

    return wait_for(asked, timeout=timeout, what=f"a PSBT of order {order_id} for {party.email}")


def _market(request, tmp_path, **over) -> Iterator[ChainMarket]:
    with open_market(request.getfixturevalue("cluster"), tmp_path, ChainMarket, chain=True, **over) as market:
        yield market
        for wallet in market.wallets:
            wallet.unload()


@pytest.fixture
def market(request, tmp_path) -> Iterator[ChainMarket]:
    yield from _market(request, tmp_path)


@pytest.fixture
def short_timeout_market(request, tmp_path) -> Iterator[ChainMarket]:
    """N small enough to mine past in a test (the app warns that it is inside the trade windows)."""
    yield from _market(request, tmp_path, onchain_timeout_blocks=TIMEOUT_BLOCKS)
