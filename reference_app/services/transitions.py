"""Applying the lifecycle table: compare-and-swap, timeline, notifications, deadlines.

``apply`` is the only code that changes ``Order.state``. It claims the
transition with ``UPDATE ... WHERE id = ? AND state = ? AND version = ?``; a
concurrent change makes that match no row, and the loser gets
``InvalidTransition`` (I6). The timeline event and both parties'
notifications are written in the same transaction (I18).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from escrow_protocol import formulas

from ..config import Settings
from ..store.db import WAKE_ORDERS, Prepared, note_after_commit, update_rows
from ..store.models import Order, OrderEvent
from . import outbox
from .errors import InvalidTransition
from .faults import planted
from .lifecycle import PENDING, TERMINAL, TRANSITIONS, E, S, allowed_events
from .records import OrderRecord

MESSAGES: dict[S, str] = {
    S.AWAITING_FUNDS: "Waiting for the buyer's payment (held, not yet paid out).",
    S.FUNDED: "The buyer's payment is locked in escrow; the seller can ship.",
    S.SHIPPED: "The seller shipped the order.",
    S.DELIVERED: "The courier reports delivery; the dispute window is open.",
    S.DISPUTED: "A dispute is open: automatic release and refund are frozen.",
    S.HELD_IN_CUSTODY: "The escrow's lock was about to expire (or the ruling window ran out), so the "
                       "marketplace now holds the funds in custody until the case is decided.",
    S.RELEASE_PENDING: "Releasing the payment to the seller.",
    S.REFUND_PENDING: "Refunding the buyer.",
    S.SPLIT_PENDING: "Paying out the arbiter's split.",
    S.RELEASED: "The seller has been paid.",
    S.REFUNDED: "The buyer has been refunded.",
    S.SPLIT: "The split has been paid to both parties.",
    S.EXPIRED: "The order expired unpaid.",
}


def now() -> datetime:
    return datetime.now(timezone.utc)


def deadlines(settings: Settings, state: S, height: int | None, lock_horizon: int | None
              ) -> tuple[datetime | None, int | None]:
    """The wall-clock and block deadlines of ``state``, entered at ``height``.

    Funded states are also bounded by the lock horizon (the guardian's height).
    Pending states have none: the worker drives them until the node confirms.
    """
    windows = {
        S.CREATED: (settings.funding_timeout_s, settings.funding_timeout_blocks),
        S.AWAITING_FUNDS: (settings.funding_timeout_s, settings.funding_timeout_blocks),
        S.FUNDED: (settings.ship_window_s, settings.ship_window_blocks),
        S.SHIPPED: (settings.delivery_window_s, settings.delivery_window_blocks),
        S.DELIVERED: (settings.dispute_window_s, settings.dispute_window_blocks),
        S.DISPUTED: (settings.ruling_window_s, settings.ruling_window_blocks),
        S.HELD_IN_CUSTODY: (settings.ruling_window_s, settings.ruling_window_blocks),
    }
    if state not in windows:
        return None, None
    seconds, blocks = windows[state]
    at = now() + timedelta(seconds=seconds)
    h = None if height is None else height + blocks
    if planted(settings, "dispute_window_short") and state == S.DELIVERED and h is not None:
        h -= 1  # the window counted from the delivery's block, not after it
    if lock_horizon is not None and state != S.HELD_IN_CUSTODY:
        h = lock_horizon if h is None else min(h, lock_horizon)
    return at, h


def hold_cltv_blocks(settings: Settings) -> int:
    """CLTV for the hold invoice: the trade windows, stretched for fast blocks (I8),
    plus the guardian's margin and LND's own hold expiry delta."""
    return formulas.hold_cltv_blocks(settings.ship_window_blocks, settings.delivery_window_blocks,
                                     settings.dispute_window_blocks, settings.speedup_factor,
                                     settings.guardian_margin_blocks, settings.hold_expiry_delta_blocks)


def lock_horizon(settings: Settings, htlc_expiry_height: int | None) -> int | None:
    """The height at which the guardian must act (I7)."""
    if htlc_expiry_height is None or planted(settings, "no_guardian"):
        return None
    return formulas.lock_horizon(htlc_expiry_height, settings.hold_expiry_delta_blocks,
                                 settings.guardian_margin_blocks)


def apply(session: Session, settings: Settings, order: OrderRecord, event: E, actor: str,
          height: int | None = None, detail: str = "", **changes) -> OrderRecord:
    """Move ``order`` by ``event``, or raise ``InvalidTransition``; ``order`` is then as its row now is."""
    current = S(order.state)
    target = TRANSITIONS.get((current, event))
    if planted(settings, "refund_after_shipment") and (current, event) == (S.SHIPPED, E.DELIVERY_TIMEOUT):
        target = S.REFUND_PENDING
    if planted(settings, "release_without_delivery") and (current, event) == (S.FUNDED, E.SHIP):
        target = S.RELEASE_PENDING
    if planted(settings, "ship_unfunded") and (current, event) == (S.AWAITING_FUNDS, E.SHIP):
        target = S.SHIPPED  # the funding check skipped while the invoice is still open
    if target is None:
        allowed = ", ".join(e.value for e in allowed_events(current)) or "none: it is final"
        raise InvalidTransition(f"order {order.id} is {current.value}; '{event.value}' is not allowed "
                                f"there (allowed: {allowed})", state=current.value, event=event.value)
    horizon = lock_horizon(settings, order.hold.htlc_expiry_height if order.hold else None)
    deadline_at, deadline_height = deadlines(settings, target, height, horizon)
    values = dict(state=target.value, version=order.version + 1, updated_at=now(),
                  deadline_at=deadline_at, deadline_height=deadline_height, **changes)
    guard = {"id": order.id, "state": current.value, "version": order.version}
    if planted(settings, "skip_cas"):
        # The bug as real systems had it: check, a node round-trip outside the
        # transaction, then a write that trusts the earlier check.
        session.commit()
        time.sleep(0.3)
        guard = {"id": order.id}
    # Statements on the session's connection, after what the session holds is flushed (as the ORM's
    # own UPDATE would autoflush): the ORM's bulk UPDATE and its unit of work for the event and the
    # notifications were an eighth of the app's CPU in an escrow (py-spy, bench escrow); building the
    # UPDATE and SQLAlchemy's execution of it were 7 % more (store.db.update_rows runs it prepared).
    session.flush()
    claimed = update_rows(session, Order.__table__, guard, values)
    if claimed != 1:
        now_state = session.connection().execute(select(Order.state).where(Order.id == order.id)).scalar()
        raise InvalidTransition(f"order {order.id} changed concurrently (now {now_state}); "
                                f"'{event.value}' was not applied", state=now_state, event=event.value)
    for key, value in values.items():  # the record as the row now is
        setattr(order, key, value)
    _EVENT.rows(session, {"order_id": order.id, "event": event.value, "from_state": current.value,
                          "to_state": target.value, "actor": actor, "height": height, "detail": detail})
    if target in PENDING:  # the worker carries it out (or the order's owner) once this commits
        note_after_commit(session, WAKE_ORDERS, (order.id, order.escrow_mode))
    if target != current:
        text = f"Order #{order.id}: {MESSAGES.get(target, target.value)}"
        kind = f"order.{target.value.lower()}"
        outbox.notify(session, (order.buyer_id, order.seller_id), kind, text, order.id)
    return order


_EVENT = Prepared(insert(OrderEvent.__table__))


def is_terminal(state: str) -> bool:
    return S(state) in TERMINAL
