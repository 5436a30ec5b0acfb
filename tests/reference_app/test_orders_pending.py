"""The worker drives every order with an outcome to carry out (``orders.pending``), except one
whose unpaid payouts all wait out a retry delay: until the first delay ends there is nothing to
do, and a soak whose hub had run out of liquidity to a seller spent a whole core of the app
reloading 98 such orders on every tick. No nodes: rows as a trade leaves them."""

from __future__ import annotations

from datetime import timedelta

from reference_app.services import orders as order_service
from reference_app.services.transitions import now
from reference_app.store.models import Listing, Order, Payout

from .test_accounts import register


def test_orders_whose_payouts_all_wait_for_a_retry_are_not_driven(api):
    buyer, seller = register(api, "buyer@example.com"), register(api, "seller@example.com", ["seller"])
    ctx = api.app.state.ctx
    later, earlier = now() + timedelta(minutes=5), now() - timedelta(seconds=1)
    with ctx.db.session() as session:
        listing = Listing(seller_id=seller["id"], title="lamp", category="home", price_sats=6_000, stock=99)
        session.add(listing)
        session.flush()

        def order(state: str, *payouts: tuple[str, str, object]) -> int:
            row = Order(listing_id=listing.id, buyer_id=buyer["id"], seller_id=seller["id"], state=state,
                        price_sats=6_000, fee_sats=60)
            session.add(row)
            session.flush()
            for beneficiary, status, next_attempt_at in payouts:
                session.add(Payout(order_id=row.id, beneficiary=beneficiary, amount_sats=2_000, status=status,
                                   user_id=buyer["id"] if beneficiary == "buyer" else seller["id"],
                                   next_attempt_at=next_attempt_at))
            return row.id

        ids = {
            "no payout yet": order("RELEASE_PENDING"),
            "retry due": order("RELEASE_PENDING", ("seller", "FAILED", earlier)),
            "never failed": order("REFUND_PENDING", ("buyer", "PENDING", None)),
            "one of two due": order("SPLIT_PENDING", ("buyer", "FAILED", later), ("seller", "FAILED", earlier)),
            "resting": order("RELEASE_PENDING", ("seller", "FAILED", later)),
            "both resting": order("SPLIT_PENDING", ("buyer", "FAILED", later), ("seller", "FAILED", later)),
            "paid, one resting": order("SPLIT_PENDING", ("buyer", "SUCCEEDED", None), ("seller", "FAILED", later)),
            "not pending": order("RELEASED", ("seller", "FAILED", later)),
        }
    driven = {order_id for order_id, _mode in order_service.pending(ctx)}
    assert {name for name, order_id in ids.items() if order_id in driven} == {
        "no payout yet", "retry due", "never failed", "one of two due"}
