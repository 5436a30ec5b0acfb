"""Deadlines and the guardian re-check what they were selected for before applying it.

The worker selects due orders, then claims each. An order can move on in
between (a ship or a dispute landing in the block of its deadline); the claim
must then apply nothing. These tests drive the selection and the claim by hand,
with the worker stopped, and move the order on in between: no timing race.
The planted bug ``stale_deadline`` is the old, unchecked claim.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from reference_app.services import deadlines
from reference_app.services.deadlines import Due
from reference_app.services.lifecycle import E, S
from reference_app.services.transitions import lock_horizon
from reference_app.store.models import Dispute, Order
from tests.reference_app.escrow.test_ln_hold import PRICE, REFUND_LOG

pytestmark = [pytest.mark.cluster, REFUND_LOG]  # teardown cancels the holds these tests leave in place


def _ctx(market, bug: str | None):
    if bug is None:
        return market.ctx
    return dataclasses.replace(market.ctx, settings=market.ctx.settings.model_copy(update={"planted_bug": bug}))


def _mine(market, blocks: int) -> int:
    """Mine with the worker stopped; requests then record the new height (no stale tip cache)."""
    height = market.cluster.mine(blocks)
    market.ctx.note_tip(height)
    return height


def _events(buyer, order_id: int) -> list[str]:
    return [e["event"] for e in buyer.call("GET", f"/orders/{order_id}/events")]


def _version(market, order_id: int) -> int:
    with market.ctx.db.session(write=False) as session:
        return session.get(Order, order_id).version


def _selected(market, order_id: int, height: int) -> Due:
    due = [d for d in deadlines.deadlines_due(market.ctx, height) if d.order_id == order_id]
    assert len(due) == 1, f"order {order_id} was not selected at height {height}"
    return due[0]


@pytest.mark.parametrize("bug", [None, "stale_deadline"])
def test_ship_landing_after_the_ship_deadline_was_selected_is_not_pushed_into_dispute(market, bug):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, PRICE)
    market.worker.stop()
    height = _mine(market, 6)  # the ship window closes in this block
    due = _selected(market, order["id"], height)
    assert due.state == S.FUNDED and not due.guardian

    seller.ship(order["id"], "fastship", f"FS-{order['id']}")  # same block, before the worker's claim
    applied = deadlines.claim(_ctx(market, bug), due, height)

    after = buyer.order(order["id"])
    if bug is None:
        assert applied is None
        assert after["state"] == "SHIPPED" and not after["disputed"]
        assert after["deadline_height"] > height  # its own delivery window starts now
        assert _events(buyer, order["id"]) == ["invoice_issued", "funded", "ship"]
    else:  # the old behaviour: the shipped order's delivery_timeout, in the block it shipped
        assert applied == E.DELIVERY_TIMEOUT
        assert after["state"] == "DISPUTED"
        assert _events(buyer, order["id"])[-1] == "delivery_timeout"


@pytest.mark.parametrize("bug", [None, "stale_deadline"])
def test_dispute_landing_at_the_delivery_deadline_is_not_put_into_custody(market, bug):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, PRICE)
    seller.ship(order["id"], "fastship", f"FS-{order['id']}")
    market.worker.stop()
    height = _mine(market, 6)  # the delivery window closes in this block
    due = _selected(market, order["id"], height)
    assert due.state == S.SHIPPED

    buyer.call("POST", f"/orders/{order['id']}/dispute", json={"reason": "never arrived"}, expect=201)
    applied = deadlines.claim(_ctx(market, bug), due, height)

    after = buyer.order(order["id"])
    horizon = lock_horizon(market.ctx.settings, order["hold"]["htlc_expiry_height"])
    assert height < horizon  # far from the lock horizon: nothing may force custody yet
    if bug is None:
        assert applied is None
        assert after["state"] == "DISPUTED"
        assert market.invoice_state(order) == "ACCEPTED"
        with market.ctx.db.session(write=False) as session:  # only the buyer's dispute, no automatic one
            reasons = list(session.scalars(select(Dispute.reason).where(Dispute.order_id == order["id"])))
        assert reasons == ["never arrived"]
    else:  # the old behaviour: the new DISPUTED state's event, long before the lock horizon
        assert applied == E.GUARDIAN_CUSTODY
        assert after["state"] == "HELD_IN_CUSTODY"


def test_a_deadline_not_yet_passed_applies_nothing(market):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, PRICE)
    market.worker.stop()
    height = market.cluster.bitcoind.rpc.getblockcount()
    assert order["deadline_height"] > height
    # Same state and version, but the claim's own look at the deadline says it has not passed.
    due = Due(order["id"], S.FUNDED, _version(market, order["id"]))
    assert deadlines.claim(market.ctx, due, height) is None
    assert buyer.order(order["id"])["state"] == "FUNDED"


def test_the_guardian_applies_nothing_before_the_lock_horizon_or_after_the_order_moved_on(market):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, PRICE)
    market.worker.stop()
    height = market.cluster.bitcoind.rpc.getblockcount()
    horizon = lock_horizon(market.ctx.settings, order["hold"]["htlc_expiry_height"])
    funded = Due(order["id"], S.FUNDED, _version(market, order["id"]), guardian=True)
    assert height < horizon
    assert deadlines.claim(market.ctx, funded, height) is None  # the horizon is not reached
    assert buyer.order(order["id"])["state"] == "FUNDED"

    seller.ship(order["id"], "fastship", f"FS-{order['id']}")
    assert deadlines.claim(market.ctx, funded, horizon) is None  # selected FUNDED, now SHIPPED
    assert buyer.order(order["id"])["state"] == "SHIPPED"
    assert market.invoice_state(order) == "ACCEPTED"
