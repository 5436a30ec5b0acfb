"""``GET /orders``: each page says what the ORM answer of the order endpoints says, for every
kind of viewer, filter and window, in the same few statements whatever its size. A user's
own orders are taken newest first from each side (buyer, seller) apart, so the window must
hold where the two sides interleave. No nodes: the rows are written straight to the database,
as trades leave them."""

from __future__ import annotations

import random

import pytest

from reference_app.api.routes.orders import order_out
from reference_app.services import policy
from reference_app.services.lifecycle import MAY_HAVE_PAYOUTS, S
from reference_app.store.models import HoldInvoice, Listing, Order, Payout, User

from .test_accounts import admin_headers, bearer, register, tokens

STATES = ("AWAITING_FUNDS", "FUNDED", "SHIPPED", "RELEASED", "DISPUTED", "HELD_IN_CUSTODY")
WINDOWS = ((5, 0), (5, 5), (7, 3), (100, 0), (3, 20), (4, 40))


@pytest.fixture
def market(api) -> dict:
    """Alice and Bob each buy from the other and from Carol; an arbiter; ids interleave."""
    people = {name: register(api, f"{name}@example.com", ["seller"]) for name in ("alice", "bob", "carol")}
    people["arbiter"] = register(api, "arbiter@example.com")
    assert api.post(f"/admin/users/{people['arbiter']['id']}/roles", headers=admin_headers(api),
                    json={"role": "arbiter", "grant": True}).status_code == 200
    rng = random.Random(7)
    with api.app.state.ctx.db.session() as session:
        listings = {}
        for name in ("alice", "bob", "carol"):
            listing = Listing(seller_id=people[name]["id"], title=f"{name}'s lamp", category="home",
                              price_sats=6_000, stock=99)
            session.add(listing)
            session.flush()
            listings[name] = listing
        for i in range(45):
            buyer, seller = rng.choice((("alice", "bob"), ("bob", "alice"), ("alice", "carol"), ("bob", "carol")))
            state = rng.choice(STATES)
            order = Order(listing_id=listings[seller].id, buyer_id=people[buyer]["id"],
                          seller_id=people[seller]["id"], state=state, disputed=state == "DISPUTED" or i % 9 == 0,
                          price_sats=6_000, fee_sats=60)
            session.add(order)
            session.flush()
            if i % 2:
                session.add(HoldInvoice(order_id=order.id, payment_hash=f"{i:064x}", preimage_enc=b"x",
                                        payment_request=f"lnbcrt{i}", amount_sats=6_000, cltv_expiry=300,
                                        created_height=101, lnd_state="ACCEPTED"))
            if state == "RELEASED":
                for beneficiary, who in (("seller", seller), ("buyer", buyer))[:1 + i % 2]:
                    session.add(Payout(order_id=order.id, beneficiary=beneficiary, user_id=people[who]["id"],
                                       amount_sats=2_940, status="SUCCEEDED", attempts=1))
    return people


def _expected(api, email: str, state: str | None, limit: int, offset: int) -> dict:
    """The page as the ORM answers it: every order the viewer may list, filtered, newest first."""
    with api.app.state.ctx.db.session(write=False) as session:
        user = session.query(User).filter_by(email=email).one()
        query = session.query(Order)
        if user.has_role("arbiter") and not user.has_role("admin"):
            query = query.filter((Order.buyer_id == user.id) | (Order.seller_id == user.id) | policy.arbiter_scope())
        elif not user.has_role("admin"):
            query = query.filter((Order.buyer_id == user.id) | (Order.seller_id == user.id))
        if state:
            query = query.filter(Order.state == state)
        every = query.order_by(Order.id.desc()).all()
        return {"items": [order_out(session, o).model_dump(mode="json") for o in every[offset:offset + limit]],
                "total": len(every)}


@pytest.mark.parametrize("who", ["alice", "bob", "carol", "arbiter", "admin"])
def test_every_page_is_the_orm_answer(api, market, who):
    email = api.app.state.ctx.settings.bootstrap_admin_email if who == "admin" else f"{who}@example.com"
    headers = admin_headers(api) if who == "admin" else bearer(tokens(api, email))
    for state in (None, "RELEASED", "DISPUTED", "CREATED"):
        for limit, offset in WINDOWS:
            params = {"limit": limit, "offset": offset, **({"state": state} if state else {})}
            resp = api.get("/orders", params=params, headers=headers)
            assert resp.status_code == 200, resp.text
            assert resp.json() == _expected(api, email, state, limit, offset), (state, limit, offset)


def test_a_page_costs_the_same_statements_whatever_its_size(api, market):
    headers = bearer(tokens(api, "alice@example.com"))
    db = api.app.state.ctx.db

    def statements(limit: int) -> int:
        """The fewest of three requests: a request that opens a new pooled connection also sends
        that connection's set-up (PostgreSQL's time zone), and the first one reads the user
        where later ones find it cached. Less the page's one read of payouts, sent only when an
        order on it can have some (services/orders.views)."""
        counts = []
        for _ in range(3):
            before = db.queries
            items = api.get("/orders", params={"limit": limit}, headers=headers).json()["items"]
            assert len(items) == limit
            counts.append(db.queries - before - any(S(o["state"]) in MAY_HAVE_PAYOUTS for o in items))
        return min(counts)

    assert statements(2) == statements(20)  # before: two more (its hold, its payouts) for each order
