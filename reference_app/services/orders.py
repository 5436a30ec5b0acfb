"""Order rules for ln_hold escrow: create, fund, ship, confirm, dispute, rule.

Every user action validates first, then claims its transition (CAS), and only
then does anything irreversible (I5). Node actions of pending states are the
worker's, through each escrow mode (services/modes/).
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, func, or_, select, union, update
from sqlalchemy.orm import Session

from escrow_protocol.formulas import PPM, fee_sats

from ..context import AppContext
from ..store.db import Prepared, PreparedUpdate
from ..store.models import Dispute, DisputeMessage, Listing, Order, OrderEvent, Payout, User
from . import holds, policy, records, transitions
from .accounts import Principal
from .errors import Conflict, NotFound, ValidationFailed
from .faults import planted
from .lifecycle import MAY_HAVE_PAYOUTS, PENDING, E, S
from .records import OrderRecord

def fee_for(settings, amount_sats: int) -> int:
    """The marketplace's commission, rounded down: the seller never pays more than the rate."""
    return fee_sats(amount_sats, settings.fee_ppm)


_ORDERS, _LISTINGS, _USERS = Order.__table__, Listing.__table__, User.__table__


class _Ordering(NamedTuple):
    active: bool
    seller_id: int
    escrow_mode: str
    price_sats: int
    address_hash: str | None


# What a new order needs of its listing and of its buyer (the shipping address): one statement
# on the driver, where the listing and the signed-in user were each loaded as ORM objects.
_ORDERING_READ = Prepared(select(*(_LISTINGS.c[k] for k in _Ordering._fields[:-1]), _USERS.c.address_hash)
                          .select_from(_LISTINGS).join(_USERS, _USERS.c.id == bindparam("buyer_id"))
                          .where(_LISTINGS.c.id == bindparam("listing_id")))


def _ordering(session: Session, listing_id: int, buyer_id: int) -> _Ordering | None:
    row = _ORDERING_READ.first(session, {"listing_id": listing_id, "buyer_id": buyer_id})
    return None if row is None else _Ordering(*row)


# A new order's claim on its listing's stock, a compare-and-swap on what is left: prepared, as the
# UPDATE built and run through SQLAlchemy was 2.7 % of the app's CPU in bench escrow (py-spy).
_QUANTITY = bindparam("quantity", type_=_LISTINGS.c.stock.type)
_TAKE_STOCK = PreparedUpdate(
    update(_LISTINGS).where(_LISTINGS.c.id == bindparam("listing_id", type_=_LISTINGS.c.id.type),
                            _LISTINGS.c.stock >= _QUANTITY)
    .values(stock=_LISTINGS.c.stock - _QUANTITY, updated_at=bindparam("now", type_=_LISTINGS.c.updated_at.type)))
# another order shipped with the same courier and tracking number
_CLASH = Prepared(select(_ORDERS.c.id).where(_ORDERS.c.courier == bindparam("courier"),
                                             _ORDERS.c.tracking_number == bindparam("tracking"),
                                             _ORDERS.c.id != bindparam("order_id")).limit(1))


def create(ctx: AppContext, session: Session, buyer: User | Principal, listing_id: int, quantity: int,
           funding: dict | None = None) -> OrderRecord:
    """Reserve stock and record the order, then let its escrow mode lock or request the funds.

    The claim commits before any node is asked (I5). If the mode cannot open
    the escrow (an unreachable node, a bad key), the order and the stock
    reservation are undone: nothing has changed.
    """
    s = ctx.settings
    found = _ordering(session, listing_id, buyer.id)
    if found is None or not found.active:
        raise NotFound(f"listing {listing_id} does not exist")
    if found.seller_id == buyer.id:
        raise ValidationFailed("you cannot buy your own listing", field="listing_id")
    mode = ctx.modes.get(found.escrow_mode)
    if mode is None:
        raise ValidationFailed(f"escrow mode {found.escrow_mode} is not available here "
                               f"(available: {', '.join(ctx.modes) or 'none'})", field="listing_id")
    if not found.address_hash:
        raise ValidationFailed("set a shipping address first (PUT /me/address)", field="address")
    price = found.price_sats * quantity
    if not s.min_price_sats <= price <= s.max_price_sats:
        raise ValidationFailed(f"order total {price} sats is outside {s.min_price_sats}..{s.max_price_sats}",
                               field="quantity")
    taken = _TAKE_STOCK.run(session, {"listing_id": listing_id, "quantity": quantity, "now": transitions.now()})
    if taken != 1:
        raise Conflict(f"listing {listing_id} has fewer than {quantity} in stock")
    order = records.insert(session, listing_id=listing_id, buyer_id=buyer.id, seller_id=found.seller_id,
                           quantity=quantity, escrow_mode=found.escrow_mode, state=S.CREATED.value,
                           price_sats=price, fee_sats=fee_for(s, price), buyer_address_hash=found.address_hash)
    session.commit()
    try:
        mode.open(session, order, buyer, funding)
        session.commit()
    except Exception:
        session.rollback()
        connection = session.connection()
        connection.execute(update(_LISTINGS).where(_LISTINGS.c.id == listing_id)
                           .values(stock=_LISTINGS.c.stock + quantity))
        connection.execute(delete(Order.__table__).where(Order.id == order.id))
        session.commit()
        raise
    for callback in ctx.on_order_created:
        callback(order.id)
    return order


def ship(ctx: AppContext, session: Session, order: OrderRecord, seller: User | Principal, courier: str,
         tracking: str, height: int | None) -> OrderRecord:
    if courier not in ctx.settings.courier_secrets:
        raise ValidationFailed(f"unknown courier {courier!r} (known: {', '.join(sorted(ctx.settings.courier_secrets))})",
                               field="courier")
    if _CLASH.first(session, {"courier": courier, "tracking": tracking, "order_id": order.id}):
        raise Conflict(f"tracking number {tracking} is already used by another order", field="tracking_number")
    return transitions.apply(session, ctx.settings, order, E.SHIP, f"user:{seller.id}", height,
                             detail=f"{courier} {tracking}", courier=courier, tracking_number=tracking)


def confirm(ctx: AppContext, session: Session, order: OrderRecord, buyer: User | Principal,
            height: int | None) -> OrderRecord:
    return transitions.apply(session, ctx.settings, order, E.BUYER_CONFIRM, f"user:{buyer.id}", height,
                             detail="buyer confirmed receipt")


def open_dispute(ctx: AppContext, session: Session, order: OrderRecord, user: User, reason: str,
                 height: int | None) -> Dispute:
    if S(order.state) == S.HELD_IN_CUSTODY and order.disputed:
        raise Conflict(f"order {order.id} already has a dispute")
    transitions.apply(session, ctx.settings, order, E.OPEN_DISPUTE, f"user:{user.id}", height,
                      detail=reason[:200], disputed=True)
    dispute = Dispute(order_id=order.id, opened_by=user.id, reason=reason)
    session.add(dispute)
    session.flush()
    return dispute


def add_message(session: Session, order: OrderRecord, user: User, body: str) -> DisputeMessage:
    dispute = dispute_of(session, order.id)
    if dispute is None:
        raise NotFound(f"order {order.id} has no dispute")
    message = DisputeMessage(dispute_id=dispute.id, author_id=user.id, body=body)
    session.add(message)
    session.flush()
    return message


RULINGS = {"release": E.RULE_RELEASE, "refund": E.RULE_REFUND, "split": E.RULE_SPLIT}


def rule(ctx: AppContext, session: Session, order: OrderRecord, arbiter: User, ruling: str,
         buyer_share_pct: float | None, height: int | None) -> OrderRecord:
    """An arbiter's ruling. A split names the buyer's share; the seller's part carries the fee."""
    dispute = dispute_of(session, order.id)
    if dispute is None and not (S(order.state) == S.HELD_IN_CUSTODY):
        raise NotFound(f"order {order.id} has no dispute to rule on")
    share_ppm = None
    changes: dict = {}
    if ruling == "split":
        if buyer_share_pct is None or not 0 < buyer_share_pct < 100:
            raise ValidationFailed("a split needs buyer_share_pct strictly between 0 and 100",
                                   field="buyer_share_pct")
        share_ppm = round(buyer_share_pct * 10_000)
        seller_gross = order.price_sats - order.price_sats * share_ppm // PPM
        changes = {"buyer_share_ppm": share_ppm, "fee_sats": fee_for(ctx.settings, seller_gross)}
    if planted(ctx.settings, "settle_before_claim") and order.hold:
        holds.settle(ctx.hub, ctx.box.open(order.hold.preimage_enc))
    transitions.apply(session, ctx.settings, order, RULINGS[ruling], f"user:{arbiter.id}", height,
                      detail=f"ruling: {ruling}" + (f" buyer {buyer_share_pct}%" if share_ppm else ""), **changes)
    if dispute is not None:
        dispute.ruling, dispute.buyer_share_ppm, dispute.arbiter_id = ruling, share_ppm, arbiter.id
        dispute.ruled_at = transitions.now()
    session.flush()
    return order


# --- reads for the worker
def escrow_mode_of(ctx: AppContext, order_id: int) -> str | None:
    with ctx.db.session(write=False) as session:
        return session.scalar(select(Order.escrow_mode).where(Order.id == order_id))


_UNPAID = (Payout.order_id == Order.id, Payout.status != "SUCCEEDED")
# An order whose unpaid payouts all wait out a retry delay has nothing to do before the first
# delay ends: payouts.attempt would return at once. Left in the selection, every tick loaded
# each such order and its payouts several times: in a soak whose hub ran out of outbound
# liquidity to a seller, 98 payouts failing NO_ROUTE kept the app at a whole core.
_RESTING = and_(select(Payout.id).where(*_UNPAID, Payout.next_attempt_at > bindparam("now")).exists(),
                ~select(Payout.id).where(*_UNPAID, or_(Payout.next_attempt_at.is_(None),
                                                       Payout.next_attempt_at <= bindparam("now"))).exists())
# The states as a fixed OR, not IN: an IN list expands at each execution (store.db.Prepared).
_PENDING = Prepared(select(Order.id, Order.escrow_mode)
                    .where(or_(*(Order.state == st.value for st in (*PENDING, S.HELD_IN_CUSTODY))), ~_RESTING)
                    .order_by(Order.id))


def pending(ctx: AppContext) -> list[tuple[int, str]]:
    """(order id, escrow mode) of every order with an outcome to carry out on its nodes now
    (every tick): not those whose payouts all wait for their next attempt. One read with no
    session (``Prepared.read``)."""
    return [(oid, mode) for oid, mode in _PENDING.read(ctx.db, {"now": transitions.now()})]


# --- reads for the API
def get(session: Session, order_id: int) -> OrderRecord:
    order = records.read(session, order_id)
    if order is None:
        raise NotFound(f"order {order_id} does not exist")
    return order


def page(session: Session, user: User, state: str | None, limit: int, offset: int) -> tuple[list[OrderView], int]:
    """The orders ``user`` may list, newest first, as views, and how many there are: their own
    as buyer or seller; arbiters also those that need or had a ruling; admins every order.

    Four statements whatever the page's size or the user's history: the count, the page's
    ids, its orders with their holds, their payouts. A user's own orders are the newest of
    each side taken apart, each in its index's order (a seller with thousands of orders had
    them all sorted for every page); the page is then read by id."""
    if user.has_role("admin"):
        sides = [None]
    elif user.has_role("arbiter"):
        sides = [or_(_ORDERS.c.buyer_id == user.id, _ORDERS.c.seller_id == user.id, policy.arbiter_scope())]
    else:
        sides = [_ORDERS.c.buyer_id == user.id, _ORDERS.c.seller_id == user.id]

    def ids(side):
        query = select(_ORDERS.c.id) if side is None else select(_ORDERS.c.id).where(side)
        return query.where(_ORDERS.c.state == state) if state else query

    newest = [select(q.c.id) for q in (ids(side).order_by(_ORDERS.c.id.desc()).limit(offset + limit).subquery()
                                       for side in sides)]
    found = union(*newest).subquery() if len(newest) > 1 else newest[0].subquery()
    connection = session.connection()
    total = connection.execute(select(func.count()).select_from(
        (union(*(ids(side) for side in sides)) if len(sides) > 1 else ids(sides[0])).subquery())).scalar_one()
    page_ids = list(connection.execute(select(found.c.id).order_by(found.c.id.desc()).limit(limit).offset(offset))
                    .scalars())
    return views(session, page_ids), total


HOLD_VIEW = ("payment_request", "payment_hash", "amount_sats", "cltv_expiry", "lnd_state", "htlc_expiry_height")
PAYOUT_VIEW = ("beneficiary", "amount_sats", "status", "attempts", "fee_sats", "payment_hash", "last_error")
_PAYOUTS = Payout.__table__
_VIEWS = records.WITH_HOLD.where(_ORDERS.c.id.in_(bindparam("order_ids", expanding=True)))
_PAYOUTS_VIEW = (select(*(_PAYOUTS.c[k] for k in PAYOUT_VIEW)).where(_PAYOUTS.c.order_id == bindparam("order_id"))
                 .order_by(_PAYOUTS.c.id))
_PAYOUTS_VIEWS = (select(_PAYOUTS.c.order_id, *(_PAYOUTS.c[k] for k in PAYOUT_VIEW))
                  .where(_PAYOUTS.c.order_id.in_(bindparam("order_ids", expanding=True))).order_by(_PAYOUTS.c.id))


class OrderView(NamedTuple):
    """An order as its reader sees it, read as rows in two statements (no ORM objects): the
    order (a record), its hold's view (or None) and its payouts."""
    order: OrderRecord
    hold: dict | None
    payouts: list[dict]


def hold_view(order: OrderRecord) -> dict | None:
    """What a reader sees of the order's hold."""
    hold = order.hold
    return None if hold is None else {k: getattr(hold, k) for k in HOLD_VIEW}


# One order's view, the read a waiting client repeats: on the driver (store.db.Prepared), where
# SQLAlchemy's execution of these two Core statements was most of the read (py-spy, bench escrow).
_PAYOUTS_READ = Prepared(_PAYOUTS_VIEW)


async def view(session: Session, order_id: int) -> OrderView | None:
    """The order's view (awaited on PostgreSQL, as store.db.Prepared.arows)."""
    order = await records.aread(session, order_id)
    if order is None:
        return None
    payouts = [dict(zip(PAYOUT_VIEW, p)) for p in await _PAYOUTS_READ.arows(session, {"order_id": order_id})] \
        if S(order.state) in MAY_HAVE_PAYOUTS else []
    return OrderView(order, hold_view(order), payouts)


def payouts_view(session: Session, order: OrderRecord) -> list[dict]:
    """The order's payouts as its readers see them (``PAYOUT_VIEW``), oldest first; what the
    session has changed is flushed first, as the ORM's own read would. An order that has never
    had a pending outcome has none, and is not asked for them (a statement saved on the answer
    to an order, a shipment and most other moves)."""
    if S(order.state) not in MAY_HAVE_PAYOUTS:
        return []
    session.flush()
    return [dict(zip(PAYOUT_VIEW, p)) for p in _PAYOUTS_READ.rows(session, {"order_id": order.id})]


def views(session: Session, order_ids: list[int]) -> list[OrderView]:
    """The views of these orders, in this order (ids not found are left out): two statements
    for them all, not two for each (one, when none of them can have payouts)."""
    if not order_ids:
        return []
    connection = session.connection()
    found = {order.id: order for order in map(records.from_row, connection.execute(_VIEWS, {"order_ids": order_ids}))}
    payouts: dict[int, list[dict]] = {order_id: [] for order_id in found}
    owed = [order.id for order in found.values() if S(order.state) in MAY_HAVE_PAYOUTS]
    for p in connection.execute(_PAYOUTS_VIEWS, {"order_ids": owed}).mappings() if owed else ():
        payouts[p["order_id"]].append({k: p[k] for k in PAYOUT_VIEW})
    return [OrderView(found[i], hold_view(found[i]), payouts[i]) for i in order_ids if i in found]


def events_of(session: Session, order_id: int) -> list[OrderEvent]:
    """The order's timeline, oldest first."""
    return list(session.scalars(select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)))


def dispute_of(session: Session, order_id: int) -> Dispute | None:
    return session.scalar(select(Dispute).where(Dispute.order_id == order_id))


def dispute_messages(session: Session, dispute_id: int) -> list[DisputeMessage]:
    return list(session.scalars(select(DisputeMessage).where(DisputeMessage.dispute_id == dispute_id)
                                .order_by(DisputeMessage.id)))


def open_disputes(session: Session) -> list[Dispute]:
    """Disputes still waiting for a ruling, oldest first."""
    return list(session.scalars(select(Dispute).where(Dispute.ruling.is_(None)).order_by(Dispute.id)))
