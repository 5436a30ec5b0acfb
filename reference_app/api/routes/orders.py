"""Orders with ln_hold escrow."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.orm import Session

from escrow_protocol import formulas

from ...context import AppContext
from ...services import orders, payout_invoices
from ...services.accounts import Principal
from ...services.lifecycle import allowed_events
from ...services.records import OrderRecord
from ...store.models import User
from ..params import Id
from ..routing import Route, answer, database_only
from ..deps import authorize_order, authorized_order, chain_tip, current_principal, current_user, get_ctx, DbSession
from ..schemas.orders import (EventOut, HandInOut, OrderCreate, OrderOut, OrderPage, PayoutInvoiceIn,
                               PayoutInvoiceOut, ShipIn)

router = APIRouter(route_class=Route, prefix="/orders", tags=["orders"])


ORDER_FIELDS = tuple(k for k in OrderOut.model_fields if k not in ("allowed_events", "hold", "payouts"))


def order_fields(order, hold: dict | None, payouts: list[dict]) -> dict:
    """What OrderOut says of an order, its hold's view and its payouts'."""
    return {**{k: getattr(order, k) for k in ORDER_FIELDS},
            "allowed_events": [e.value for e in allowed_events(order.state)],
            "hold": None if hold is None else {**hold, "payer_notice": formulas.payer_notice(hold["cltv_expiry"])},
            "payouts": payouts}


def order_out(session: Session, order: OrderRecord) -> OrderOut:
    return OrderOut(**order_fields(order, orders.hold_view(order), orders.payouts_view(session, order)))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
def create_order(body: OrderCreate, user: Principal = Depends(current_principal), ctx: AppContext = Depends(get_ctx),
                 session: Session = DbSession) -> OrderOut:
    """Order a listing; the response carries the hold invoice the buyer's node must pay."""
    order = orders.create(ctx, session, user, body.listing_id, body.quantity)
    return order_out(session, order)


@router.get("", response_model=OrderPage)
async def list_orders(state: str | None = None, limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
                      user: User = Depends(current_user), session: Session = DbSession) -> Response:
    """Your orders as buyer or seller; arbiters also see the orders that need or had a ruling,
    admins every order."""
    views, total = orders.page(session, user, state, limit, offset)
    return answer(OrderPage, {"items": [order_fields(*v) for v in views], "total": total})


@router.get("/{order_id}", response_model=OrderOut)
async def get_order(order_id: Id, viewer: Principal = Depends(current_principal), ctx: AppContext = Depends(get_ctx),
                    session: Session = DbSession) -> Response:
    """The order, its hold and its payouts: what a client polls while it waits for the next state,
    so it reads rows, not ORM objects, and is serialised once."""
    found = await orders.view(session, order_id)
    authorize_order(viewer, order_id, found and found.order, "view", ctx)
    return answer(OrderOut, order_fields(*found))


@router.get("/{order_id}/events", response_model=list[EventOut])
async def order_events(order: OrderRecord = Depends(authorized_order("view")),
                       session: Session = DbSession) -> list[EventOut]:
    """The order's timeline: every transition, who caused it, and the chain height."""
    return [EventOut.model_validate(r, from_attributes=True) for r in orders.events_of(session, order.id)]


@router.post("/{order_id}/ship", response_model=OrderOut)
@database_only
def ship(body: ShipIn, height: int | None = Depends(chain_tip), order: OrderRecord = Depends(authorized_order("ship")),
         user: Principal = Depends(current_principal), ctx: AppContext = Depends(get_ctx),
         session: Session = DbSession) -> OrderOut:
    orders.ship(ctx, session, order, user, body.courier, body.tracking_number, height)
    return order_out(session, order)


@router.post("/{order_id}/confirm", response_model=OrderOut)
@database_only
def confirm(height: int | None = Depends(chain_tip), order: OrderRecord = Depends(authorized_order("confirm")),
            user: Principal = Depends(current_principal), ctx: AppContext = Depends(get_ctx),
            session: Session = DbSession) -> OrderOut:
    """The buyer confirms receipt: the payment is released to the seller."""
    orders.confirm(ctx, session, order, user, height)
    return order_out(session, order)


@router.post("/{order_id}/payout-invoice", response_model=PayoutInvoiceOut)
def payout_invoice(body: PayoutInvoiceIn, order: OrderRecord = Depends(authorized_order("payout_invoice")),
                   user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
                   session: Session = DbSession) -> PayoutInvoiceOut:
    """Hand in the invoice your payout should pay (instead of a bound node). Before any payment
    starts, it replaces an earlier one (``payout_invoice.replaced`` names it); while a payment is
    in flight it is refused (409 ``payout_in_flight``, naming the invoice being paid)."""
    beneficiary = "seller" if order.seller_id == user.id else "buyer"
    done = payout_invoices.hand_in(ctx, session, order, user, beneficiary, body.payment_request)
    return PayoutInvoiceOut(**order_out(session, order).model_dump(),
                            payout_invoice=HandInOut(beneficiary=done.beneficiary, payment_request=done.payment_request,
                                                     payment_hash=done.payment_hash, replaced=done.replaced))
