"""The order thread on the real cluster: buyer and seller write, strangers cannot read,
the arbiter reads it only once the order is disputed, and it shows as dispute evidence."""

from __future__ import annotations

import pytest

from tests.reference_app.notifications.conftest import NOT_INITIATED_LOG, funded_order, market  # noqa: F401

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]


def test_thread_is_private_until_dispute_then_evidence_for_the_arbiter(market):
    buyer, _account, seller, order = funded_order(market)
    oid = order["id"]
    buyer.call("POST", f"/orders/{oid}/messages", json={"body": "Is it the blue one?"}, expect=201)
    seller.call("POST", f"/orders/{oid}/messages", json={"body": "Yes, blue, as pictured."}, expect=201)
    thread = [m["body"] for m in buyer.call("GET", f"/orders/{oid}/messages")]
    assert thread == ["Is it the blue one?", "Yes, blue, as pictured."]
    assert seller.call("GET", "/me/notifications")["items"][0]["kind"] == "message.new"

    arbiter, stranger = market.arbiter(), market.buyer("buyer2")
    for outsider in (arbiter, stranger):
        denied = outsider.attempt("GET", f"/orders/{oid}/messages")
        assert (denied.status_code, denied.json()["code"]) == (404, "not_found")  # as if there were no order
    written = stranger.attempt("POST", f"/orders/{oid}/messages", json={"body": "spam"})
    assert (written.status_code, written.json()["code"]) == (404, "not_found")
    empty = buyer.attempt("POST", f"/orders/{oid}/messages", json={"body": ""})
    assert (empty.status_code, empty.json()["field"]) == (422, "body")

    seller.ship(oid, "fastship", "MS-1001")
    buyer.call("POST", f"/orders/{oid}/dispute", json={"reason": "it arrived red"}, expect=201)
    assert [m["body"] for m in arbiter.call("GET", f"/orders/{oid}/messages")] == thread
    dispute = arbiter.call("GET", f"/orders/{oid}/dispute")
    assert [(m["author_id"], m["body"]) for m in dispute["evidence"]] == [
        (buyer.id, "Is it the blue one?"), (seller.id, "Yes, blue, as pictured.")]
    assert stranger.attempt("GET", f"/orders/{oid}/messages").status_code == 404   # a dispute opens it to the arbiter only
