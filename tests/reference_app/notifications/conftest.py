"""The custodial marketplace on the real cluster with fast webhook retries, the harness's webhook
receiver, and a trade helper the rating, messaging, admin and GDPR tests share."""

from __future__ import annotations

from typing import Iterator

import pytest

from reference_app.services.modes.custodial import wallet_name
from regtest_cluster.nodes.bitcoind import RpcError
from harness.actors_custodial import list_custodial
from harness.webhooks import WebhookReceiver
from tests.reference_app.custodial_mode.conftest import CustodialMarket
from tests.reference_app.escrow.conftest import ADDRESSES, open_market

NOT_INITIATED_LOG = pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated")
DEPOSIT, PRICE = 100_000, 20_000


@pytest.fixture
def market(cluster, tmp_path) -> Iterator[CustodialMarket]:
    with open_market(cluster, tmp_path, CustodialMarket, chain=True, webhook_retry_base_s=0.1,
                     market_loop_interval_s=0.1) as market:
        yield market
        try:
            market.ctx.chain.unloadwallet(wallet_name(market.ctx.settings))
        except RpcError:
            pass  # never made: the test touched no wallet


def funded_order(market, buyer_node: str = "buyer1", seller_node: str = "seller1", price: int = PRICE):
    """A custodial order, FUNDED: (buyer, buyer account, seller, order)."""
    buyer, account = market.funded_buyer(DEPOSIT, buyer_node)
    seller = market.seller(seller_node, bind=False)
    listing = list_custodial(seller, f"item {price}", price)
    return buyer, account, seller, buyer.buy(listing["id"])


def release(market, buyer, seller, order: dict, tracking: str) -> dict:
    """Ship, deliver, let the dispute window end: RELEASED through every automatic transition."""
    seller.ship(order["id"], "fastship", tracking)
    market.courier().deliver(tracking, ADDRESSES[buyer.node.name])
    market.mine(6)
    return buyer.wait_state(order["id"], "RELEASED")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()
