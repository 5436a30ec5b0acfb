"""Bad input against a live escrow: one clear error each, and no escrow changes state."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from reference_app.main import build_context, create_app
from regtest_cluster.nodes.lnd_grpc import LndGrpc
from regtest_cluster.ports import PortAllocator
from harness.actors import Buyer, Seller
from tests.reference_app.conftest import make_settings
from tests.reference_app.escrow.conftest import ADDRESSES
from tests.reference_app.escrow.test_ln_hold import PRICE, REFUND_LOG

pytestmark = [pytest.mark.cluster, REFUND_LOG]  # the teardown cancels the holds left in place


@pytest.fixture
def shipped(market):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, PRICE)
    seller.ship(order["id"], "fastship", f"FS-BAD-{order['id']}")
    return market, buyer, seller, buyer.order(order["id"])


def unchanged(market, buyer, order, state="SHIPPED"):
    assert buyer.order(order["id"])["state"] == state
    assert market.invoice_state(order) == "ACCEPTED"


def problem(response, status, code, words):
    assert response.status_code == status, response.text
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == code and words in body["detail"], body
    return body


def test_webhook_forged_signature_is_rejected(shipped):
    market, buyer, _seller, order = shipped
    courier = market.courier()
    r = courier.event(order["tracking_number"], "delivered", ADDRESSES["buyer1"], secret="not-the-secret")
    problem(r, 401, "webhook_rejected", "signature does not match")
    unchanged(market, buyer, order)


def test_webhook_stale_timestamp_is_rejected(shipped):
    market, buyer, _seller, order = shipped
    r = market.courier().event(order["tracking_number"], "delivered", ADDRESSES["buyer1"],
                               timestamp=int(time.time()) - 3600)
    problem(r, 401, "webhook_rejected", "outside the 300s window")
    unchanged(market, buyer, order)


def test_webhook_replayed_event_changes_nothing(shipped):
    market, buyer, _seller, order = shipped
    courier = market.courier()
    first = courier.event(order["tracking_number"], "in_transit", ADDRESSES["buyer1"], event_id="evt-1")
    assert first.status_code == 200 and first.json()["applied"] is False
    again = courier.event(order["tracking_number"], "in_transit", ADDRESSES["buyer1"], event_id="evt-1")
    problem(again, 409, "webhook_replayed", "evt-1 from fastship was already processed")
    unchanged(market, buyer, order)


def test_webhook_delivery_to_another_address_is_not_evidence(shipped):
    market, buyer, _seller, order = shipped
    r = market.courier().event(order["tracking_number"], "delivered", "99 Wrong Street, Elsewhere")
    body = problem(r, 422, "validation_failed", "does not match the buyer's address")
    assert body["field"] == "address_hash"
    unchanged(market, buyer, order)


def test_webhook_unknown_courier_and_malformed_body_are_rejected(shipped):
    market, buyer, _seller, order = shipped
    r = market.http.post("/webhooks/courier/nobody", content=b"{}",
                         headers={"X-Escrowlab-Timestamp": str(int(time.time())), "X-Escrowlab-Signature": "v1=00"})
    problem(r, 401, "webhook_rejected", "unknown courier 'nobody'")
    r = market.courier().event(order["tracking_number"], "teleported", ADDRESSES["buyer1"])
    assert problem(r, 422, "validation_failed", "status must be one of")["field"] == "status"
    unchanged(market, buyer, order)


def test_wrong_roles_are_refused(shipped):
    market, buyer, seller, order = shipped
    stranger = market.buyer("buyer2")
    oid = order["id"]
    problem(seller.attempt("POST", f"/orders/{oid}/confirm"), 403, "permission_denied", "confirm on order")
    problem(buyer.attempt("POST", f"/orders/{oid}/ship", json={"courier": "fastship", "tracking_number": "ABCD"}),
            403, "permission_denied", "ship on order")
    # a stranger cannot even tell that the order exists: the answer to an order id never issued
    problem(stranger.attempt("POST", f"/orders/{oid}/confirm"), 404, "not_found", f"order {oid} does not exist")
    problem(stranger.attempt("GET", f"/orders/{oid}"), 404, "not_found", f"order {oid} does not exist")
    problem(buyer.attempt("POST", f"/orders/{oid}/dispute/ruling", json={"ruling": "refund"}),
            403, "permission_denied", "needs to be its arbiter")
    problem(market.http.post(f"/orders/{oid}/confirm"), 401, "not_authenticated", "log in first")
    unchanged(market, buyer, order)


def test_unknown_order_is_404(shipped):
    _market, buyer, _seller, _order = shipped
    problem(buyer.attempt("POST", "/orders/999999/confirm"), 404, "not_found", "order 999999 does not exist")


def test_malformed_bodies_name_the_field(shipped):
    market, buyer, seller, order = shipped
    oid = order["id"]
    body = problem(seller.attempt("POST", f"/orders/{oid}/ship", json={"courier": "fastship"}),
                   422, "validation_failed", "tracking_number")
    assert body["field"] == "tracking_number"
    body = problem(buyer.attempt("POST", "/orders", json={"listing_id": order["listing_id"], "quantity": "many"}),
                   422, "validation_failed", "quantity")
    assert body["field"] == "quantity"
    problem(buyer.attempt("POST", f"/orders/{oid}/dispute", json={"reason": "bad", "extra": 1}),
            422, "validation_failed", "reason")
    problem(buyer.attempt("POST", f"/orders/{oid}/dispute", content=b"{not json", headers={"Content-Type": "application/json"}),
            422, "validation_failed", "JSON")
    unchanged(market, buyer, order)


def test_invalid_transitions_are_409_and_change_nothing(shipped):
    market, buyer, seller, order = shipped
    r = seller.attempt("POST", f"/orders/{order['id']}/ship", json={"courier": "fastship", "tracking_number": "AGAIN-1"})
    body = problem(r, 409, "invalid_transition", "is SHIPPED; 'ship' is not allowed there")
    assert body["state"] == "SHIPPED"
    unchanged(market, buyer, order)


def test_no_shipping_or_dispute_before_funding(market):
    buyer, seller = market.buyer(), market.seller()
    listing = seller.list_item("unpaid thing", PRICE)
    order = buyer.buy(listing["id"])  # never paid
    problem(seller.attempt("POST", f"/orders/{order['id']}/ship", json={"courier": "fastship", "tracking_number": "EARLY-1"}),
            409, "invalid_transition", "is AWAITING_FUNDS; 'ship' is not allowed")
    problem(buyer.attempt("POST", f"/orders/{order['id']}/dispute", json={"reason": "I changed my mind"}),
            409, "invalid_transition", "is AWAITING_FUNDS; 'open_dispute' is not allowed")
    assert buyer.order(order["id"])["state"] == "AWAITING_FUNDS"
    assert market.invoice_state(order) == "OPEN"


def test_unreachable_node_is_503_and_nothing_changes(tmp_path, cluster):
    settings = make_settings(tmp_path, run_worker_inprocess=False)
    ctx = build_context(settings, with_node=False)
    hub = cluster.node("hub")
    dead_port = PortAllocator().take()  # free, so nothing listens there
    ctx.hub = LndGrpc("hub", f"127.0.0.1:{dead_port}", hub.macaroon_path.read_bytes().hex(), hub.tls_cert, timeout=5)
    with TestClient(create_app(ctx=ctx)) as http:
        seller = Seller.register(http, "seller", ["seller"])
        buyer = Buyer.register(http, "buyer", ["buyer"], address=ADDRESSES["buyer1"])
        listing = seller.list_item("needs a node", PRICE, stock=3)
        problem(buyer.attempt("POST", "/orders", json={"listing_id": listing["id"]}), 503, "node_unavailable",
                "the Lightning node is unreachable")
        assert buyer.call("GET", "/orders")["total"] == 0
        assert http.get(f"/listings/{listing['id']}").json()["stock"] == 3
        # an order action reads the chain height from the hub first (deps.chain_tip), but only for
        # a signed-in user: without a valid token the answer is 401, whatever the hub's state
        for path, body in (("ship", {"courier": "fastship", "tracking_number": "T-1"}), ("confirm", None),
                           ("dispute", {"reason": "never came"}), ("dispute/ruling", {"ruling": "refund"})):
            problem(http.post(f"/orders/1/{path}", json=body), 401, "not_authenticated", "log in first")
            problem(http.post(f"/orders/1/{path}", json=body, headers={"Authorization": "Bearer forged"}),
                    401, "not_authenticated", "")
        problem(buyer.attempt("POST", "/orders/1/confirm"), 503, "node_unavailable", "the Lightning node is unreachable")
    ctx.db.dispose()
