"""The custodial marketplace on the real cluster with fast webhook retries, and a
trade helper the rating, messaging, admin and GDPR tests share."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from reference_app.services.modes.custodial import wallet_name
from regtest_cluster.nodes.bitcoind import RpcError
from harness.actors_custodial import list_custodial
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


class Receiver:
    """A local webhook endpoint that records signed POSTs; fails the first ``fail_first`` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict] = []
        self.fail_first = fail_first
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                if outer.attempts <= outer.fail_first:
                    self.send_response(503)
                else:
                    outer.received.append({"body": body, "timestamp": self.headers["X-Escrowlab-Timestamp"],
                                           "signature": self.headers["X-Escrowlab-Signature"],
                                           "event_id": self.headers["X-Escrowlab-Event-Id"]})
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def verified(self, secret: str) -> list[dict]:
        """Every received body whose signature checks out, decoded."""
        out = []
        for r in self.received:
            mac = hmac.new(secret.encode(), f"{r['timestamp']}.".encode() + r["body"], hashlib.sha256).hexdigest()
            if hmac.compare_digest(f"v1={mac}", r["signature"]):
                out.append(json.loads(r["body"]))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()
