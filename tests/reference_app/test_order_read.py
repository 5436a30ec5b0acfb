"""``GET /orders/{id}``, what clients poll while they wait for the next state, reads rows and
serialises once (services/orders.view, deps.current_principal). It must say exactly what the
ORM answer of every other order endpoint (routes/orders.order_out) says, and refuse exactly
as ``current_user`` and ``authorized_order`` do. No nodes: the rows are written straight to
the database, as a trade leaves them."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from reference_app.api.routes.orders import order_out
from reference_app.services import orders as order_service
from reference_app.services.lifecycle import MAY_HAVE_PAYOUTS, PENDING, TRANSITIONS, S
from reference_app.services.payouts import plan
from reference_app.store.models import HoldInvoice, Listing, Order, Payout, User
from tests.helpers import record_statements

from .test_accounts import bearer, register, tokens


@pytest.fixture
def orders(api) -> dict:
    buyer, seller = register(api, "buyer@example.com"), register(api, "seller@example.com", ["seller"])
    ids = {}
    with api.app.state.ctx.db.session() as session:
        listing = Listing(seller_id=seller["id"], title="lamp", category="home", price_sats=6_000, stock=9)
        session.add(listing)
        session.flush()

        def order(state: str, **extra) -> Order:
            row = Order(listing_id=listing.id, buyer_id=buyer["id"], seller_id=seller["id"], state=state,
                        price_sats=6_000, fee_sats=60, **extra)
            session.add(row)
            session.flush()
            return row

        bare = order("AWAITING_FUNDS")
        shipped = order("SHIPPED", courier="ups", tracking_number="1Z111")
        held = order("RELEASED", courier="ups", tracking_number="1Z999", delivered_evidence=True, version=5)
        session.add(HoldInvoice(order_id=held.id, payment_hash="ab" * 32, preimage_enc=b"x", payment_request="lnbcrt1",
                                amount_sats=6_000, cltv_expiry=1_054, created_height=101, lnd_state="SETTLED",
                                amt_paid_sats=6_000, htlc_expiry_height=1_200))
        for beneficiary, user, amount, status, error in (("buyer", buyer, 3_000, "FAILED", "no route"),
                                                         ("seller", seller, 2_940, "SUCCEEDED", None)):
            session.add(Payout(order_id=held.id, beneficiary=beneficiary, user_id=user["id"], amount_sats=amount,
                               status=status, attempts=1, fee_sats=3, last_error=error))
        ids.update(bare=bare.id, shipped=shipped.id, held=held.id, buyer=buyer["id"])
    return ids


def test_the_polled_read_says_what_the_orm_answer_says(api, orders):
    auth = bearer(tokens(api, "buyer@example.com"))
    for name in ("bare", "shipped", "held"):
        resp = api.get(f"/orders/{orders[name]}", headers=auth)
        assert resp.status_code == 200, resp.text
        with api.app.state.ctx.db.session(write=False) as session:
            expected = order_out(session, session.get(Order, orders[name])).model_dump(mode="json")
        assert resp.json() == expected
    held = api.get(f"/orders/{orders['held']}", headers=auth).json()
    assert held["hold"]["payer_notice"] and held["hold"]["cltv_expiry"] == 1_054  # over the LDK payers' cap
    assert [p["status"] for p in held["payouts"]] == ["FAILED", "SUCCEEDED"]


def test_the_polled_read_refuses_as_every_order_endpoint_does(api, orders):
    register(api, "stranger@example.com")
    stranger = bearer(tokens(api, "stranger@example.com"))
    buyer = bearer(tokens(api, "buyer@example.com"))
    for order_id in (orders["held"], 999_999):  # a stranger cannot tell an order exists
        resp = api.get(f"/orders/{order_id}", headers=stranger)
        assert (resp.status_code, resp.json()["detail"]) == (404, f"order {order_id} does not exist")
    assert api.get(f"/orders/{orders['held']}").status_code == 401
    with api.app.state.ctx.db.session() as session:
        session.get(User, orders["buyer"]).token_version += 1  # a logout everywhere
    resp = api.get(f"/orders/{orders['held']}", headers=buyer)
    assert (resp.status_code, resp.json()["detail"]) == (401, "token no longer valid")
    with api.app.state.ctx.db.session() as session:
        user = session.get(User, orders["buyer"])
        user.token_version -= 1
        user.blocked = True
    resp = api.get(f"/orders/{orders['held']}", headers=buyer)
    assert (resp.status_code, resp.json()["detail"]) == (403, "this account is blocked")


PAYOUTS_READ = re.compile(r"^\s*SELECT\b.*\bFROM payouts\b", re.IGNORECASE | re.DOTALL)


def test_only_an_order_that_had_a_pending_outcome_can_have_payouts(api):
    """The readers skip the payouts of an order outside MAY_HAVE_PAYOUTS. That holds only while
    payouts are planned for pending outcomes alone (a hand-in, too, pays what ``plan`` owes) and
    no transition leads out of the set."""
    settings = api.app.state.ctx.settings
    for state in S:
        order = SimpleNamespace(id=1, state=state.value, buyer_id=2, seller_id=3, price_sats=6_000, fee_sats=60,
                                buyer_share_ppm=500_000)
        assert bool(plan(settings, order)) == (state in PENDING), state
    assert PENDING <= MAY_HAVE_PAYOUTS
    assert all(target in MAY_HAVE_PAYOUTS for (source, _e), target in TRANSITIONS.items() if source in MAY_HAVE_PAYOUTS)
    assert {S.AWAITING_FUNDS, S.FUNDED, S.SHIPPED, S.DELIVERED, S.DISPUTED, S.HELD_IN_CUSTODY}.isdisjoint(MAY_HAVE_PAYOUTS)


def test_a_read_asks_for_payouts_only_where_there_can_be_some(api, orders, monkeypatch):
    auth = bearer(tokens(api, "buyer@example.com"))
    seen = record_statements(api.app.state.ctx.db, monkeypatch)
    for name, asked in (("bare", 0), ("shipped", 0), ("held", 1)):
        seen.clear()
        assert api.get(f"/orders/{orders[name]}", headers=auth).status_code == 200
        assert sum(1 for s in seen if PAYOUTS_READ.match(s)) == asked, (name, seen)
    seen.clear()
    page = api.get("/orders", headers=auth).json()
    assert {o["id"]: len(o["payouts"]) for o in page["items"]} == {orders["bare"]: 0, orders["shipped"]: 0,
                                                                   orders["held"]: 2}
    assert sum(1 for s in seen if PAYOUTS_READ.match(s)) == 1, seen
    with api.app.state.ctx.db.session(write=False) as session:
        seen.clear()
        assert order_service.views(session, [orders["bare"], orders["shipped"]])[0].payouts == []
        assert not any(PAYOUTS_READ.match(s) for s in seen), seen
