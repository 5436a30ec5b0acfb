"""An arbiter sees the orders that need or had a ruling (disputed, or held in custody),
not every order: the others get the same 404 as any non-party, the answer an order id
that was never issued gets (a 403 would tell that the order exists). No nodes: the orders
are rows written straight to the database, in the states a trade would leave them."""

from __future__ import annotations

import pytest

from reference_app.store.models import Listing, Order

from .test_accounts import admin_headers, bearer, register, tokens

# name -> (state, disputed): what a trade leaves behind at each point
ORDERS = {"funded": ("FUNDED", False), "shipped": ("SHIPPED", False), "released": ("RELEASED", False),
          "disputed": ("DISPUTED", True), "ruled": ("RELEASED", True), "custody": ("HELD_IN_CUSTODY", False)}
SEEN_BY_ARBITER = {"disputed", "ruled", "custody"}
VIEWS = ("/orders/{id}", "/orders/{id}/events", "/orders/{id}/dispute")


@pytest.fixture
def trade(api) -> dict:
    buyer, seller = register(api, "buyer@example.com"), register(api, "seller@example.com", ["seller"])
    arbiter = register(api, "arbiter@example.com")
    granted = api.post(f"/admin/users/{arbiter['id']}/roles", headers=admin_headers(api),
                       json={"role": "arbiter", "grant": True})
    assert granted.status_code == 200, granted.text
    ids = {}
    with api.app.state.ctx.db.session() as session:
        listing = Listing(seller_id=seller["id"], title="lamp", category="home", price_sats=6_000, stock=9)
        session.add(listing)
        session.flush()
        for name, (state, disputed) in ORDERS.items():
            order = Order(listing_id=listing.id, buyer_id=buyer["id"], seller_id=seller["id"], state=state,
                          disputed=disputed, price_sats=6_000, fee_sats=60)
            session.add(order)
            session.flush()
            ids[name] = order.id
    return ids


def headers(api, email: str) -> dict:
    return bearer(tokens(api, email))


def test_arbiter_views_only_orders_that_need_or_had_a_ruling(api, trade):
    arbiter = headers(api, "arbiter@example.com")
    for name, order_id in trade.items():
        for view in VIEWS[:2]:
            resp = api.get(view.format(id=order_id), headers=arbiter)
            if name in SEEN_BY_ARBITER:
                assert resp.status_code == 200, (name, view, resp.text)
            else:
                assert resp.status_code == 404, (name, view, resp.text)
                assert resp.json()["detail"] == f"order {order_id} does not exist"


def test_arbiter_is_denied_like_any_non_party(api, trade):
    register(api, "stranger@example.com")
    arbiter, stranger = headers(api, "arbiter@example.com"), headers(api, "stranger@example.com")
    for view in VIEWS:
        path = view.format(id=trade["funded"])
        a, s = api.get(path, headers=arbiter), api.get(path, headers=stranger)
        none = api.get(view.format(id=10 ** 9), headers=stranger)
        assert (a.status_code, a.json()["code"]) == (s.status_code, s.json()["code"]) == (404, "not_found")
        assert a.text == s.text == none.text.replace(str(10 ** 9), str(trade["funded"]))


def test_arbiter_lists_only_orders_that_need_or_had_a_ruling(api, trade):
    listed = api.get("/orders", params={"limit": 100}, headers=headers(api, "arbiter@example.com")).json()
    assert {o["id"] for o in listed["items"]} == {trade[n] for n in SEEN_BY_ARBITER}
    assert listed["total"] == len(SEEN_BY_ARBITER)


def test_admin_and_parties_still_see_every_order(api, trade):
    for email, auth in (("admin", admin_headers(api)), ("buyer", headers(api, "buyer@example.com")),
                        ("seller", headers(api, "seller@example.com"))):
        listed = api.get("/orders", params={"limit": 100}, headers=auth).json()
        assert {o["id"] for o in listed["items"]} == set(trade.values()), email
        assert api.get(f"/orders/{trade['funded']}", headers=auth).status_code == 200, email


def test_arbiter_who_is_the_buyer_sees_their_own_order(api, trade):
    arbiter = headers(api, "arbiter@example.com")
    arbiter_id = api.get("/me", headers=arbiter).json()["id"]
    with api.app.state.ctx.db.session() as session:
        session.get(Order, trade["funded"]).buyer_id = arbiter_id
    assert api.get(f"/orders/{trade['funded']}", headers=arbiter).status_code == 200
