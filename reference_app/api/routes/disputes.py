"""Disputes: opened by a party, argued with messages, decided by an arbiter."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import messaging, orders
from ...services.errors import NotFound
from ...services.accounts import Principal
from ...services.records import OrderRecord
from ...store.models import Dispute, User
from ..routing import Route, database_only
from ..deps import authorized_order, chain_tip, current_user, get_ctx, DbSession, require_role
from ..schemas.orders import DisputeIn, DisputeOut, MessageIn, MessageOut, OrderOut, RulingIn
from .orders import order_out

router = APIRouter(route_class=Route, tags=["disputes"])


def dispute_out(session: Session, dispute: Dispute) -> DisputeOut:
    messages = orders.dispute_messages(session, dispute.id)
    return DisputeOut(order_id=dispute.order_id, opened_by=dispute.opened_by, reason=dispute.reason,
                      ruling=dispute.ruling, buyer_share_ppm=dispute.buyer_share_ppm, arbiter_id=dispute.arbiter_id,
                      opened_at=dispute.opened_at, ruled_at=dispute.ruled_at,
                      messages=[MessageOut(author_id=m.author_id, body=m.body, at=m.at) for m in messages],
                      evidence=[MessageOut(author_id=m.author_id, body=m.body, at=m.at)
                                for m in messaging.evidence(session, dispute.order_id)])


@router.post("/orders/{order_id}/dispute", status_code=status.HTTP_201_CREATED, response_model=DisputeOut)
@database_only
def open_dispute(body: DisputeIn, height: int | None = Depends(chain_tip),
                 order: OrderRecord = Depends(authorized_order("dispute")),
                 user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
                 session: Session = DbSession) -> DisputeOut:
    """Either party opens a dispute; automatic release and refund stop (I12)."""
    return dispute_out(session, orders.open_dispute(ctx, session, order, user, body.reason, height))


@router.get("/orders/{order_id}/dispute", response_model=DisputeOut)
async def get_dispute(order: OrderRecord = Depends(authorized_order("view")), session: Session = DbSession) -> DisputeOut:
    dispute = orders.dispute_of(session, order.id)
    if dispute is None:
        raise NotFound(f"order {order.id} has no dispute")
    return dispute_out(session, dispute)


@router.post("/orders/{order_id}/dispute/messages", status_code=status.HTTP_201_CREATED, response_model=MessageOut)
def add_message(body: MessageIn, order: OrderRecord = Depends(authorized_order("message")),
                user: User = Depends(current_user), session: Session = DbSession) -> MessageOut:
    m = orders.add_message(session, order, user, body.body)
    return MessageOut(author_id=m.author_id, body=m.body, at=m.at)


@router.post("/orders/{order_id}/dispute/ruling", response_model=OrderOut)
def rule(body: RulingIn, height: int | None = Depends(chain_tip),
         order: OrderRecord = Depends(authorized_order("rule")), user: User = Depends(current_user),
         ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> OrderOut:
    """An arbiter (who is not a party) rules: release, refund, or split with the buyer's share."""
    orders.rule(ctx, session, order, user, body.ruling, body.buyer_share_pct, height)
    return order_out(session, order)


@router.get("/disputes", response_model=list[DisputeOut])
async def open_disputes(_arbiter: Principal = Depends(require_role("arbiter")),
                        session: Session = DbSession) -> list[DisputeOut]:
    """Disputes waiting for a ruling (arbiters only)."""
    return [dispute_out(session, d) for d in orders.open_disputes(session)]
