"""Ratings on the real cluster: only the two parties of an ended order rate, once each;
the seller's reputation filters listing search. Refusals change nothing."""

from __future__ import annotations

import pytest

from tests.reference_app.notifications.conftest import NOT_INITIATED_LOG, funded_order, market, release  # noqa: F401

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]


def test_parties_rate_once_each_and_strangers_cannot(market):
    buyer, _account, seller, order = funded_order(market)
    early = buyer.attempt("POST", f"/orders/{order['id']}/rating", json={"stars": 5})
    assert (early.status_code, early.json()["code"]) == (409, "order_not_final")
    release(market, buyer, seller, order, "RT-1001")

    given = buyer.call("POST", f"/orders/{order['id']}/rating", json={"stars": 4, "comment": "as described"},
                       expect=201)
    assert (given["ratee_id"], given["ratee_role"], given["stars"]) == (seller.id, "seller", 4)
    back = seller.call("POST", f"/orders/{order['id']}/rating", json={"stars": 5}, expect=201)
    assert (back["ratee_id"], back["ratee_role"]) == (buyer.id, "buyer")
    before = (buyer.call("GET", f"/users/{seller.id}/reputation"), buyer.call("GET", f"/users/{buyer.id}/reputation"))
    assert (before[0]["seller_rating"], before[0]["seller_ratings"]) == (4.0, 1)
    assert (before[1]["buyer_rating"], before[1]["buyer_ratings"]) == (5.0, 1)

    stranger = market.buyer("buyer2")
    refused = stranger.attempt("POST", f"/orders/{order['id']}/rating", json={"stars": 1})
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")  # as if there were no order
    assert refused.json()["detail"] == f"order {order['id']} does not exist"
    twice = buyer.attempt("POST", f"/orders/{order['id']}/rating", json={"stars": 1})
    assert (twice.status_code, twice.json()["code"]) == (409, "already_rated")
    bad = seller.attempt("POST", f"/orders/{order['id']}/rating", json={"stars": 9})
    assert (bad.status_code, bad.json()["field"]) == (422, "stars")
    after = (buyer.call("GET", f"/users/{seller.id}/reputation"), buyer.call("GET", f"/users/{buyer.id}/reputation"))
    assert after == before


def test_min_seller_rating_filters_search(market):
    buyer, _account, seller, order = funded_order(market)
    release(market, buyer, seller, order, "RT-2001")
    buyer.call("POST", f"/orders/{order['id']}/rating", json={"stars": 4}, expect=201)
    unrated = market.seller("seller2", bind=False)
    unrated.list_item("unrated seller's item", 5_000)

    def sellers(min_rating: float) -> set[int]:
        page = buyer.call("GET", "/listings", params={"min_seller_rating": min_rating})
        return {item["seller_id"] for item in page["items"]}

    assert sellers(4) == {seller.id}
    assert sellers(4.5) == set()
    assert {i["seller_id"] for i in buyer.call("GET", "/listings")["items"]} == {seller.id, unrated.id}
    bad = buyer.attempt("GET", "/listings", params={"min_seller_rating": 6})
    assert (bad.status_code, bad.json()["field"]) == (422, "min_seller_rating")
