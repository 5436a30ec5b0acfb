"""An order as the rules read and change it: one row of the order with its hold, no ORM object.

Every rule that moves an order (``transitions.apply``, the escrow modes, the worker, the
deadlines, the courier's webhook, the API's order actions) works on an ``OrderRecord``: the
order's columns as attributes and its hold invoice (a ``Hold``, or None), read in one
statement on the driver (``store.db.Prepared``). What changes, changes by Core statements:
``apply``'s compare-and-swap UPDATE (it then sets the record as the row now is), ``set_hold``,
``insert`` and ``add_hold``.

The ORM object was the app's dearest read in an escrow: a ship's or a confirm's order, the
worker's order at each pass and the hold's observation loaded it, its joined hold and their
identity-map bookkeeping, 7 % of the app's CPU (py-spy, ``bench escrow``). The ORM model
``store.models.Order`` stays for what is neither hot nor a rule (GDPR's export, admin pages,
queries by column).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..store.db import Database, Prepared, update_rows
from ..store.models import HoldInvoice, Order

ORDERS, HOLDS = Order.__table__, HoldInvoice.__table__
ORDER_COLUMNS = tuple(c.key for c in ORDERS.c)
HOLD_COLUMNS = tuple(c.key for c in HOLDS.c)
Hold = namedtuple("Hold", HOLD_COLUMNS)

# the order and its hold's columns (as hold_<name>): one row for each order
WITH_HOLD = (select(*ORDERS.c, *(HOLDS.c[k].label(f"hold_{k}") for k in HOLD_COLUMNS))
             .outerjoin(HOLDS, HOLDS.c.order_id == ORDERS.c.id))
_BY_ID = Prepared(WITH_HOLD.where(ORDERS.c.id == bindparam("order_id")))
_INSERT = Prepared(ORDERS.insert().returning(*ORDERS.c))
_INSERT_HOLD = Prepared(HOLDS.insert().returning(*HOLDS.c))
_NO_ORDER = len(ORDER_COLUMNS)


def _nulls(table) -> dict[str, None]:
    """The nullable columns with no default, each None: what an insert leaves out (a Prepared
    INSERT names every column)."""
    return {c.key: None for c in table.c if c.nullable and c.default is None and not c.primary_key}


_ORDER_NULLS, _HOLD_NULLS = _nulls(ORDERS), _nulls(HOLDS)


class OrderRecord:
    """An order's columns as attributes, and ``hold``: its hold invoice as a ``Hold`` (None if
    it has none). ``transitions.apply`` and ``set_hold`` keep it as the row now is."""

    __slots__ = (*ORDER_COLUMNS, "hold")

    def __init__(self, values, hold: Hold | None = None) -> None:
        for key, value in zip(ORDER_COLUMNS, values):
            setattr(self, key, value)
        self.hold = hold

    def __repr__(self) -> str:
        return f"OrderRecord(id={self.id}, state={self.state}, version={self.version})"


def from_row(row) -> OrderRecord:
    """The record of a row of ``WITH_HOLD`` (the order's columns, then its hold's)."""
    hold = row[_NO_ORDER:]
    return OrderRecord(row, None if hold[0] is None else Hold(*hold))


def read(session: Session, order_id: int) -> OrderRecord | None:
    """The order and its hold, in the session's transaction if it has begun (a writer's read
    stays in it), else as one statement by itself."""
    row = _BY_ID.first(session, {"order_id": order_id})
    return None if row is None else from_row(row)


def load(database: Database, order_id: int) -> OrderRecord | None:
    """``read`` by itself, with no session (``Prepared.read``): a pass of the worker's."""
    rows = _BY_ID.read(database, {"order_id": order_id})
    return from_row(rows[0]) if rows else None


def first(session: Session, *where) -> OrderRecord | None:
    """The first order (by id) that ``where`` selects, with its hold."""
    row = session.connection().execute(WITH_HOLD.where(*where).order_by(ORDERS.c.id).limit(1)).first()
    return None if row is None else from_row(row)


async def aread(session: Session, order_id: int) -> OrderRecord | None:
    """``read`` on the event loop: awaited on PostgreSQL until the session has begun."""
    row = await _BY_ID.afirst(session, {"order_id": order_id})
    return None if row is None else from_row(row)


def insert(session: Session, **values: Any) -> OrderRecord:
    """A new order row (columns left out take their defaults, the nullable ones None)."""
    (row,) = _INSERT.rows(session, {**_ORDER_NULLS, **values})
    return OrderRecord(row)


def add_hold(session: Session, order: OrderRecord, **values: Any) -> Hold:
    """The order's hold invoice, inserted and set on the record."""
    (row,) = _INSERT_HOLD.rows(session, {**_HOLD_NULLS, **values, "order_id": order.id})
    order.hold = Hold(*row)
    return order.hold


def set_hold(session: Session, order: OrderRecord, **changes: Any) -> None:
    """Write ``changes`` to the order's hold, and keep the record as the row now is."""
    update_rows(session, HOLDS, {"order_id": order.id}, changes)
    order.hold = order.hold._replace(**changes)
