"""Driving claimed outcomes to completion on the node: settle, cancel, pay.

Each function re-reads the order, acts only if the state still calls for it,
and confirms with the node before recording the result. All of them are safe
to repeat after a crash (settle and cancel are idempotent, payouts go
through the at-most-once protocol in payouts.py).
"""

from __future__ import annotations

from regtest_cluster.nodes.lnd import LndError

from ..context import AppContext
from ..store.models import Order
from . import faults, holds, orders, payouts, transitions
from .faults import planted
from .lifecycle import E, S


def _load(ctx: AppContext, order_id: int) -> Order:
    with ctx.db.session() as session:
        return session.get(Order, order_id)


def ensure_settled(ctx: AppContext, order: Order, height: int | None) -> bool:
    """Settle the hold (idempotent) and confirm it; False if the node cancelled it instead."""
    hold = order.hold
    if hold.lnd_state == "SETTLED":
        return True
    truth = holds.lookup(ctx.hub, bytes.fromhex(hold.payment_hash))
    if truth.state == "ACCEPTED":
        holds.settle(ctx.hub, ctx.box.open(hold.preimage_enc))
        faults.point("after_settle", ctx.settings.fault_points)
        truth = holds.lookup(ctx.hub, bytes.fromhex(hold.payment_hash))
    with ctx.db.session() as session:
        fresh = session.get(Order, order.id)
        fresh.hold.lnd_state = truth.state
        if truth.state == "SETTLED":
            fresh.hold.settled_at = fresh.hold.settled_at or transitions.now()
            return True
        if truth.state == "CANCELED":
            orders.observe_invoice(ctx, session, fresh, truth, height)
        return False


def ensure_cancelled(ctx: AppContext, order: Order) -> str:
    """Cancel the hold and confirm; returns the node's final state (CANCELED or SETTLED)."""
    payment_hash = bytes.fromhex(order.hold.payment_hash)
    try:
        holds.cancel(ctx.hub, payment_hash)
    except LndError as exc:
        if "already settled" not in exc.message:
            raise
    faults.point("after_cancel", ctx.settings.fault_points)
    truth = holds.lookup(ctx.hub, payment_hash)
    with ctx.db.session() as session:
        session.get(Order, order.id).hold.lnd_state = truth.state
    return truth.state


def _pay_all(ctx: AppContext, order: Order) -> bool:
    ids = payouts.ensure(ctx, order)
    done = all(payouts.attempt(ctx, pid) == "SUCCEEDED" for pid in ids)
    if done and planted(ctx.settings, "double_payout"):
        done = all(payouts.attempt(ctx, pid) == "SUCCEEDED" for pid in ids)
    return done


def _finish(ctx: AppContext, order_id: int, event: E, height: int | None, detail: str) -> None:
    with ctx.db.session() as session:
        order = session.get(Order, order_id)
        transitions.apply(session, ctx.settings, order, event, "worker", height, detail=detail)


def drive(ctx: AppContext, order_id: int, height: int | None) -> str:
    """Take one step towards completing the order's pending outcome; returns its state."""
    order = _load(ctx, order_id)
    state = S(order.state)
    if state == S.HELD_IN_CUSTODY:
        ensure_settled(ctx, order, height)
    elif state == S.RELEASE_PENDING:
        faults.point("after_claim_release", ctx.settings.fault_points)
        if ensure_settled(ctx, order, height) and _pay_all(ctx, _load(ctx, order_id)):
            _finish(ctx, order_id, E.RELEASED, height, f"seller paid {order.price_sats - order.fee_sats} sats")
    elif state == S.SPLIT_PENDING:
        if ensure_settled(ctx, order, height) and _pay_all(ctx, _load(ctx, order_id)):
            _finish(ctx, order_id, E.SPLIT_DONE, height, "both parties paid")
    elif state == S.REFUND_PENDING:
        final = order.hold.lnd_state if order.hold.lnd_state == "SETTLED" else ensure_cancelled(ctx, order)
        if final == "CANCELED":
            _finish(ctx, order_id, E.REFUNDED, height, "hold invoice cancelled: the buyer's HTLC is failed back")
        elif final == "SETTLED" and _pay_all(ctx, _load(ctx, order_id)):
            _finish(ctx, order_id, E.REFUNDED, height, f"buyer repaid {order.price_sats} sats from custody")
    return _load(ctx, order_id).state
