"""The marketplace on the real regtest cluster: a fresh app and database per
test, on the session's shared hub cluster. Trade windows are short in blocks
and long in wall time, so tests move time by mining."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from sqlalchemy import select

from reference_app.context import AppContext
from reference_app.main import build_context, create_app
from reference_app.store.models import HoldInvoice
from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.bitcoind import BitcoinRpc
from regtest_cluster.nodes.lnd import LndError, LndNode
from regtest_cluster.nodes.lnd_grpc import LndGrpc
from regtest_cluster.waiting import wait_for
from harness.actors import Buyer, Party, Seller
from harness.http import HttpMarketplace
from harness.world import ADDRESSES, Cast
from tests.reference_app.conftest import make_settings

WINDOWS = dict(funding_timeout_blocks=6, ship_window_blocks=6, delivery_window_blocks=6, dispute_window_blocks=6,
               ruling_window_blocks=500, worker_interval_s=0.1, payout_retry_base_s=0.2)


def hub_client(node: LndNode) -> LndGrpc:
    """The app's own client of the hub (gRPC, as the app builds it), closed with the app."""
    return LndGrpc(node.name, node.grpc_host, node.macaroon_path.read_bytes().hex(), node.tls_cert)


@dataclass
class Market(Cast):
    http: TestClient
    ctx: AppContext
    cluster: Cluster
    admin: Party
    payments: dict = None  # order id -> the buyer's payment thread

    def __post_init__(self) -> None:
        self.payments = {}
        # The harness's parties act through the reference app's driver, over the in-process client
        self.market = HttpMarketplace(self.http, self.cluster, admin=self.admin,
                                      courier_secrets=self.ctx.settings.courier_secrets)

    @property
    def worker(self):
        return self.http.app.state.worker

    def courier_secret(self, name: str) -> str:
        return self.ctx.settings.courier_secrets[name]

    def mine(self, blocks: int) -> int:
        height = self.cluster.mine(blocks)
        if self.worker:
            self.worker.wake()
        return height

    def funded_order(self, buyer: Buyer, seller: Seller, price: int = 20_000) -> dict:
        listing = seller.list_item(f"item {price}", price)
        order = buyer.buy(listing["id"])
        self.payments[order["id"]] = buyer.pay(order)
        return buyer.wait_state(order["id"], "FUNDED")

    def payment_outcome(self, order: dict, timeout: float = 30) -> str:
        """How the buyer's own node saw its payment end: SUCCEEDED (settled) or FAILED (cancelled)."""
        thread = self.payments[order["id"]]
        thread.join(timeout)
        return thread.outcome.get("status", "UNFINISHED")

    def invoice_state(self, order: dict) -> str:
        return self.ctx.hub.lookup_invoice(bytes.fromhex(order["hold"]["payment_hash"]))["state"]


def local_sats(node: LndNode) -> int:
    return int(node.rest.channelbalance()["local_balance"]["sat"])


def wait_balances(nodes: dict[str, LndNode], before: dict[str, int], expected_delta: dict[str, int]) -> None:
    """Wait until each node's channel balance moved by exactly its expected delta (node truth)."""
    def settled() -> bool:
        return all(local_sats(nodes[n]) - before[n] == d for n, d in expected_delta.items())

    try:
        wait_for(settled, timeout=20, what="channel balances to settle")
    except Exception:
        actual = {n: local_sats(nodes[n]) - before[n] for n in expected_delta}
        raise AssertionError(f"balance deltas: expected {expected_delta}, node truth {actual}") from None


def release_holds(market: Market) -> None:
    """Cancel holds a test left in place, so no HTLC lingers in the shared cluster."""
    with market.ctx.db.session() as session:
        hashes = [h.payment_hash for h in session.scalars(select(HoldInvoice))]
    for payment_hash in hashes:
        try:
            if market.ctx.hub.lookup_invoice(bytes.fromhex(payment_hash))["state"] in ("OPEN", "ACCEPTED"):
                market.ctx.hub.cancel_invoice(bytes.fromhex(payment_hash))
        except LndError:
            pass  # gone already: nothing is held
    for thread in market.payments.values():
        thread.join(30)


@contextmanager
def open_market(cluster: Cluster, tmp_path, cls=None, chain: bool = False, **settings_over) -> Iterator["Market"]:
    """The app in-process on ``cluster``: fresh settings and database, the hub (and,
    with ``chain``, the app's bitcoind), the worker, and the bootstrap admin logged in."""
    settings = make_settings(tmp_path, **{**WINDOWS, **settings_over})
    ctx = build_context(settings, with_node=False)
    ctx.hub = hub_client(cluster.node("hub"))
    if chain:
        b = cluster.bitcoind
        ctx.chain = BitcoinRpc(b.rpc_url, b.rpc_user, b.rpc_password)
    try:
        with TestClient(create_app(ctx=ctx)) as http:
            admin = Party(http, "admin", ["admin"], email=settings.bootstrap_admin_email, password=settings.bootstrap_admin_password)
            admin.login()
            yield (cls or Market)(http, ctx, cluster, admin)
    finally:
        ctx.hub.close()
        if ctx.chain is not None:
            ctx.chain.close()
        ctx.db.dispose()


@pytest.fixture
def market(request, tmp_path) -> Iterator[Market]:
    """The app on the shared cluster; ``@pytest.mark.fresh_cluster`` gives it a cluster of its own
    (for tests that stop or restart nodes)."""
    fresh = request.node.get_closest_marker("fresh_cluster") is not None
    cluster = request.getfixturevalue("fresh_cluster" if fresh else "cluster")
    with open_market(cluster, tmp_path) as market:
        yield market
        release_holds(market)
