"""The buyer-seller thread of each order. The arbiter reads it once the order is
disputed: the messages are evidence, shown with the dispute."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.models import Order, User
from ..store.models_market import OrderMessage
from . import outbox
from .errors import PermissionDenied, ValidationFailed
from .policy import hide_unrelated

BODY_MAX_CHARS = 5_000


def _may_read(user: User, order: Order) -> bool:
    if user.id in (order.buyer_id, order.seller_id) or user.has_role("admin"):
        return True
    return user.has_role("arbiter") and order.disputed


def thread(session: Session, order: Order, user: User) -> list[OrderMessage]:
    hide_unrelated(user, order)
    if not _may_read(user, order):
        raise PermissionDenied(f"the messages of order {order.id} are for its buyer and seller "
                               "(and its arbiter once disputed)")
    return list(session.scalars(select(OrderMessage).where(OrderMessage.order_id == order.id)
                                .order_by(OrderMessage.id)))


def post(session: Session, order: Order, user: User, body: str) -> OrderMessage:
    hide_unrelated(user, order)
    if user.id not in (order.buyer_id, order.seller_id):
        raise PermissionDenied(f"only the buyer and the seller of order {order.id} write in its thread")
    if not body.strip() or len(body) > BODY_MAX_CHARS:
        raise ValidationFailed(f"body must be 1 to {BODY_MAX_CHARS} characters", field="body")
    message = OrderMessage(order_id=order.id, author_id=user.id, body=body)
    session.add(message)
    other = order.seller_id if user.id == order.buyer_id else order.buyer_id
    outbox.notify(session, (other,), "message.new", f"Order #{order.id}: a new message from the "
                                                    f"{'buyer' if user.id == order.buyer_id else 'seller'}.", order.id)
    session.flush()
    return message


def evidence(session: Session, order_id: int) -> list[OrderMessage]:
    """The thread as dispute evidence (read by whoever may see the dispute)."""
    return list(session.scalars(select(OrderMessage).where(OrderMessage.order_id == order_id)
                                .order_by(OrderMessage.id)))
