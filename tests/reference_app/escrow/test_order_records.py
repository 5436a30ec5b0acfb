"""The rules read and change an order as a record (services/records.py), never as an ORM
object, on the real cluster: an escrow from its order to its seller's payout loads no ORM object
of its order, hold, listing, parties or payouts into any session. Before, the order's ORM object
(with its joined hold) was loaded by the ship, the confirm, each hold observation and each pass
of the worker: 7 % of the app's CPU; and a new order loaded its listing and its buyer."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from reference_app.store.models import HoldInvoice, Listing, Order, Payout, User
from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


MODELS = (Order, HoldInvoice, Listing, User, Payout)


def test_an_escrow_loads_no_orm_object_of_its_rows(market):
    loaded: list[str] = []

    def load(target, _context) -> None:
        loaded.append(f"{type(target).__name__} {target.id}")

    buyer, seller = market.buyer(), market.seller()  # (signing up and binding a node load the user)
    for model in MODELS:
        event.listen(model, "load", load)
    try:
        order = market.funded_order(buyer, seller, 22_000)
        oid = order["id"]
        shipped = seller.ship(oid, "fastship", f"FS-{oid}-records")
        buyer.confirm(oid)
        released = buyer.wait_state(oid, "RELEASED")
        wait_for(lambda: not market.worker._driving, timeout=10, what="the release's drive to end")
    finally:
        for model in MODELS:
            event.remove(model, "load", load)

    assert loaded == []
    # and the answers are as they were: the hold as the node left it, the payout paid
    assert shipped["state"] == "SHIPPED" and shipped["hold"]["lnd_state"] == "ACCEPTED"
    assert released["hold"]["lnd_state"] == "SETTLED" and released["payouts"][0]["status"] == "SUCCEEDED"
    assert released["courier"] == "fastship" and released["tracking_number"] == f"FS-{oid}-records"
