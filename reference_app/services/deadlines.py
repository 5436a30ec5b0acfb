"""The rules of time: what a passed deadline or a nearing lock expiry does to an order.

The worker only schedules. Each tick it asks here which orders came due
(``deadlines_due``, ``guardian_due``) and hands each back to ``claim``.

Between that selection and the claim the order may move on: a ship or a
dispute can land in the same block (or tick) as the deadline. The claim
therefore re-checks, inside its own transaction, that the order is still in
the state and version it was selected in and that this state's deadline (or,
for the guardian, the lock horizon) has passed. If not, nothing is applied:
the new state has its own deadline, which comes due on its own. Without that
re-check a shipped order was pushed into dispute by ``delivery_timeout`` in
the block it shipped, and a fresh dispute went into custody long before the
lock horizon (the planted bug ``stale_deadline`` brings that back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.models import Dispute, HoldInvoice, Listing, Order
from . import records, transitions
from .errors import DomainError
from .faults import planted
from .lifecycle import E, S
from .records import OrderRecord

log = logging.getLogger("escrowlab.deadlines")

# The event a state's passed deadline applies. HELD_IN_CUSTODY's is the default ruling (below).
DEADLINE_EVENTS = {
    S.CREATED: E.FUNDING_TIMEOUT,
    S.AWAITING_FUNDS: E.FUNDING_TIMEOUT,
    S.FUNDED: E.SHIP_TIMEOUT,
    S.SHIPPED: E.DELIVERY_TIMEOUT,       # never a silent refund after shipment: a dispute opens
    S.DELIVERED: E.DISPUTE_WINDOW_END,
    S.DISPUTED: E.GUARDIAN_CUSTODY,      # the ruling window ran out: custody, the case goes on
}
TIMED_STATES = (*DEADLINE_EVENTS, S.HELD_IN_CUSTODY)
# States whose lock the guardian watches (I7).
GUARDED_STATES = (S.FUNDED, S.SHIPPED, S.DELIVERED, S.DISPUTED)


@dataclass(frozen=True)
class Due:
    """An order that came due, as it was when selected: the claim re-checks exactly this."""

    order_id: int
    state: S
    version: int
    guardian: bool = False   # the lock horizon (not the state's deadline) made it due


# --- the rules
def guardian_event(state: S) -> E:
    """The guardian's decision when a lock nears expiry (I7): an order not yet shipped is
    cancelled, which refunds the buyer; one shipped or disputed goes into custody."""
    return E.GUARDIAN_CANCEL if state == S.FUNDED else E.GUARDIAN_CUSTODY


def default_ruling(order: OrderRecord) -> E:
    """The ruling when custody's ruling window runs out: release if delivery was
    evidenced and nobody disputed, otherwise refund."""
    return E.RULING_TIMEOUT_RELEASE if order.delivered_evidence and not order.disputed else E.RULING_TIMEOUT_REFUND


def lock_horizon_reached(ctx: AppContext, order: OrderRecord, height: int) -> bool:
    horizon = transitions.lock_horizon(ctx.settings, order.hold.htlc_expiry_height if order.hold else None)
    return horizon is not None and height >= horizon


def overdue(height: int | None):
    """SQL: the order's current deadline has passed, in wall-clock time or in blocks."""
    passed = [Order.deadline_at <= transitions.now()]
    if height is not None:
        passed.append(Order.deadline_height <= height)
    return or_(*passed)


# --- what came due (read only). Every tick runs these, several times an escrow: they are built
# once, with the values bound, and run on the session's connection (building a statement and the
# ORM's execution around it had cost more than the database's work).
_DUE_COLUMNS = (Order.id, Order.state, Order.version)
_TIMED = Order.state.in_([st.value for st in TIMED_STATES])
_DUE_BY_TIME = select(*_DUE_COLUMNS).where(_TIMED, Order.deadline_at <= bindparam("now")).order_by(Order.id)
_DUE = (select(*_DUE_COLUMNS).where(_TIMED, or_(Order.deadline_at <= bindparam("now"),
                                                Order.deadline_height <= bindparam("height")))
        .order_by(Order.id))
# The horizon is expiry - delta - margin (formulas.lock_horizon), so it is reached once
# expiry <= height + delta + margin; claim() re-checks it with the formula itself.
_GUARDED = (select(*_DUE_COLUMNS).join(HoldInvoice, HoldInvoice.order_id == Order.id)
            .where(Order.state.in_([st.value for st in GUARDED_STATES]), Order.escrow_mode == bindparam("mode"),
                   HoldInvoice.htlc_expiry_height.is_not(None), HoldInvoice.htlc_expiry_height <= bindparam("reach"))
            .order_by(Order.id))


def deadlines_due(ctx: AppContext, height: int | None) -> list[Due]:
    """Orders in a timed state whose deadline passed, oldest first."""
    with ctx.db.session(write=False) as session:
        now = transitions.now()
        rows = session.connection().execute(*((_DUE_BY_TIME, {"now": now}) if height is None else
                                              (_DUE, {"now": now, "height": height}))).all()
    return [Due(order_id, S(state), version) for order_id, state, version in rows]


def guardian_due(ctx: AppContext, height: int) -> list[Due]:
    """Orders whose lock nears its expiry; each escrow mode with an expiring lock knows which."""
    if planted(ctx.settings, "no_guardian"):
        return []
    with ctx.db.session(write=False) as session:
        return [due for mode in ctx.modes.values() for due in mode.guardian_due(session, height)]


def guarded(ctx: AppContext, session: Session, mode_name: str, height: int) -> list[Due]:
    """For a mode whose lock is a hold invoice: its watched orders past their lock horizon.
    In SQL, not per order in Python: every tick, with every held escrow."""
    if planted(ctx.settings, "no_guardian"):
        return []
    s = ctx.settings
    reach = height + s.hold_expiry_delta_blocks + s.guardian_margin_blocks
    rows = session.connection().execute(_GUARDED, {"mode": mode_name, "reach": reach}).all()
    return [Due(order_id, S(state), version, guardian=True) for order_id, state, version in rows]


# --- claiming what came due
def stale(ctx: AppContext, session: Session, order: OrderRecord, due: Due, height: int) -> str | None:
    """Why ``due`` no longer holds for ``order`` as it is now, or None if it still does."""
    if order.state != due.state.value or order.version != due.version:
        return (f"it moved on to {order.state} (version {order.version}) since it came due "
                f"in {due.state.value} (version {due.version})")
    if due.guardian:
        if not lock_horizon_reached(ctx, order, height):
            return f"its lock horizon is not reached at height {height}"
    elif session.scalar(select(Order.id).where(Order.id == order.id, overdue(height))) is None:
        return f"the deadline of {order.state} has not passed (height {height}, deadline {order.deadline_height})"
    return None


def claim(ctx: AppContext, due: Due, height: int) -> E | None:
    """Apply what came due, if it still holds (re-checked in the claiming transaction).

    Returns the event applied, or None when nothing was: the order moved on,
    its current deadline has not passed, or the claim lost a race (I6).
    """
    s = ctx.settings
    try:
        with ctx.db.session() as session:
            order = records.read(session, due.order_id)
            if order is None:
                return None
            if not planted(s, "stale_deadline"):
                why = stale(ctx, session, order, due, height)
                if why is not None:
                    log.info("order %s: nothing applied: %s", due.order_id, why)
                    return None
            state = S(order.state)
            if due.guardian:
                event, actor, detail = guardian_event(due.state), "guardian", f"lock horizon reached at height {height}"
            elif state == S.HELD_IN_CUSTODY:
                event, actor, detail = default_ruling(order), "worker", "ruling deadline passed: default ruling"
            elif state in DEADLINE_EVENTS:
                event, actor, detail = DEADLINE_EVENTS[state], "worker", "deadline passed"
            else:
                return None  # only reachable with the planted bug: a state without a deadline
            transitions.apply(session, s, order, event, actor, height, detail=detail,
                              **({"disputed": True} if event == E.DELIVERY_TIMEOUT else {}))
            if event == E.DELIVERY_TIMEOUT:
                session.add(Dispute(order_id=order.id, opened_by=order.buyer_id,
                                    reason="delivery was not confirmed in time"))
            if event == E.FUNDING_TIMEOUT:
                session.get(Listing, order.listing_id).stock += order.quantity
            mode = ctx.modes.get(order.escrow_mode)
        if event == E.FUNDING_TIMEOUT and mode:
            mode.expire(due.order_id)  # after the claim committed (I5)
        return event
    except DomainError as exc:
        log.info("order %s: %s", due.order_id, exc)
        return None
