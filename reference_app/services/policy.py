"""Who may do what to an order: one table, checked in one place (I4).

A user's relation to an order is buyer, seller, arbiter (an arbiter who is not
a party: no conflict of interest, on an order that needs or had a ruling) or
admin. Each action lists the relations that may perform it.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_

from ..store.models import Order, User
from .accounts import Principal
from .errors import NotFound, PermissionDenied
from .faults import planted
from .lifecycle import S

ORDER_ACTIONS: dict[str, frozenset[str]] = {
    "view": frozenset({"buyer", "seller", "arbiter", "admin"}),
    "ship": frozenset({"seller"}),
    "confirm": frozenset({"buyer"}),
    "dispute": frozenset({"buyer", "seller"}),
    "message": frozenset({"buyer", "seller", "arbiter"}),
    "rule": frozenset({"arbiter"}),
    "payout_invoice": frozenset({"buyer", "seller"}),
}


def relations(user: User | Principal, order: Order) -> set[str]:
    rel = set()
    if order.buyer_id == user.id:
        rel.add("buyer")
    if order.seller_id == user.id:
        rel.add("seller")
    if user.has_role("arbiter") and not rel and needs_arbiter(order):
        rel.add("arbiter")
    if user.has_role("admin"):
        rel.add("admin")
    return rel


def needs_arbiter(order: Order) -> bool:
    """Disputed (by a party or by a missed delivery; it stays so after the ruling), or held
    in custody awaiting a ruling. Other orders are none of an arbiter's business."""
    return bool(order.disputed) or order.state == S.HELD_IN_CUSTODY


def arbiter_scope() -> ColumnElement[bool]:
    """``needs_arbiter`` as a query filter, for listing orders."""
    return or_(Order.disputed.is_(True), Order.state == S.HELD_IN_CUSTODY.value)


def hide_unrelated(user: User | Principal, order: Order) -> None:
    """A user with no relation to an order learns nothing of it, not even that it exists: the
    same 404 as an order id never issued (a 403 let anyone count the orders)."""
    if not relations(user, order):
        raise NotFound(f"order {order.id} does not exist")


def check_order(user: User | Principal, order: Order, action: str, settings=None) -> set[str]:
    allowed = ORDER_ACTIONS[action]
    if action == "confirm" and settings is not None and planted(settings, "seller_confirms"):
        allowed = allowed | {"seller"}
    rel = relations(user, order)
    if not rel & allowed:
        raise PermissionDenied(f"{action} on order {order.id} needs to be its "
                               f"{' or '.join(sorted(allowed))}")
    return rel & allowed
