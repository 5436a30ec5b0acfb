"""The marketplace with custodial escrow on the shared cluster: the ``market`` of
tests/reference_app/escrow, plus the app's bitcoind (``ctx.chain``), so the app
builds its custodial mode and a custody wallet of its own database."""

from __future__ import annotations

from typing import Iterator

import pytest

from reference_app.services.modes.custodial import wallet_name
from regtest_cluster.nodes.bitcoind import RpcError
from harness.actors import Buyer, Party, Seller
from harness.actors_custodial import Account, list_custodial
from tests.reference_app.escrow.conftest import Market, open_market

K = 3  # custodial_confirmations (the default)


class CustodialMarket(Market):
    def account(self, party: Party) -> Account:
        return Account(party, self.cluster)

    def funded_buyer(self, amount: int, node: str = "buyer1") -> tuple[Buyer, Account]:
        buyer = self.buyer(node)
        account = self.account(buyer)
        account.deposit_onchain(amount, K)
        return buyer, account

    def custodial_order(self, buyer: Buyer, seller: Seller, price: int) -> dict:
        listing = list_custodial(seller, f"item {price}", price)
        return buyer.buy(listing["id"])

    def reconcile(self) -> dict:
        return self.admin.call("GET", "/admin/reconcile")

    def ledger(self) -> dict:
        return self.admin.call("GET", "/admin/ledger")


@pytest.fixture
def market(cluster, tmp_path) -> Iterator[CustodialMarket]:
    with open_market(cluster, tmp_path, CustodialMarket, chain=True) as market:
        yield market
        try:
            market.ctx.chain.unloadwallet(wallet_name(market.ctx.settings))
        except RpcError:
            pass  # never made: the test touched no wallet
