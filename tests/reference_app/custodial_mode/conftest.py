"""The marketplace with custodial escrow on the shared cluster: the ``market`` of
tests/reference_app/escrow, plus the app's bitcoind (``ctx.chain``), so the app
builds its custodial mode and a custody wallet of its own database."""

from __future__ import annotations

from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from reference_app.main import build_context, create_app
from reference_app.services import modes
from reference_app.services.modes.custodial import wallet_name
from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError
from scenarios.actors import Buyer, Party, Seller
from scenarios.actors_custodial import Account, list_custodial
from tests.reference_app.conftest import make_settings
from tests.reference_app.escrow.conftest import WINDOWS, Market, hub_client

K = 3  # custodial_confirmations (the default)
SERVED = ("ln_hold", "custodial")


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
    settings = make_settings(tmp_path, **WINDOWS)
    ctx = build_context(settings, with_node=False)
    ctx.hub = hub_client(cluster.node("hub"))
    b = cluster.bitcoind
    ctx.chain = BitcoinRpc(b.rpc_url, b.rpc_user, b.rpc_password)
    # Only the modes under test: one mode's failing watch aborts the worker's whole tick,
    # so another mode's work in progress must not decide these tests.
    ctx.modes = {n: m for n, m in modes.build(ctx).items() if n in SERVED}
    app = create_app(ctx=ctx)
    with TestClient(app) as http:
        admin = Party(http, settings.bootstrap_admin_email, ["admin"])
        admin.password = settings.bootstrap_admin_password
        admin.login()
        yield CustodialMarket(http, ctx, cluster, admin)
    try:
        ctx.chain.unloadwallet(wallet_name(ctx.settings))
    except RpcError:
        pass  # never made: the test touched no wallet
    ctx.chain.close()
    ctx.hub.close()
    ctx.db.dispose()
