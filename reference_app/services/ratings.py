"""Feedback after an order ends: the buyer rates the seller and the seller the buyer,
once each (a unique constraint, so a race cannot rate twice). A seller's reputation
(average stars, count) comes from their buyers' ratings and filters listing search."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..store.models import Listing, User
from ..store.models_market import Rating
from . import outbox, records
from .errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from .policy import hide_unrelated
from .transitions import is_terminal

COMMENT_MAX_CHARS = 2_000


class AlreadyRated(Conflict):
    code = "already_rated"


class OrderNotFinal(Conflict):
    code = "order_not_final"


def rate(session: Session, order_id: int, rater: User, stars: int, comment: str = "") -> Rating:
    order = records.read(session, order_id)
    if order is None:
        raise NotFound(f"order {order_id} does not exist")
    hide_unrelated(rater, order)
    if rater.id not in (order.buyer_id, order.seller_id):
        raise PermissionDenied(f"only the buyer and the seller of order {order.id} can rate it")
    if not is_terminal(order.state):
        raise OrderNotFinal(f"order {order.id} is {order.state}; rate it once it has ended", state=order.state)
    if not (isinstance(stars, int) and 1 <= stars <= 5):
        raise ValidationFailed("stars must be an integer from 1 to 5", field="stars")
    if len(comment) > COMMENT_MAX_CHARS:
        raise ValidationFailed(f"comment must be at most {COMMENT_MAX_CHARS} characters", field="comment")
    ratee, role = (order.seller_id, "seller") if rater.id == order.buyer_id else (order.buyer_id, "buyer")
    if session.scalar(select(Rating.id).where(Rating.order_id == order.id, Rating.rater_id == rater.id)):
        raise AlreadyRated(f"you already rated order {order.id}; a rating cannot be changed")
    rating = Rating(order_id=order.id, rater_id=rater.id, ratee_id=ratee, ratee_role=role, stars=stars,
                    comment=comment)
    try:
        with session.begin_nested():
            session.add(rating)
            session.flush()
    except IntegrityError:
        raise AlreadyRated(f"you already rated order {order.id}; a rating cannot be changed") from None
    outbox.notify(session, (ratee,), "rating.received", f"Order #{order.id}: you were rated {stars}/5.", order.id)
    return rating


def require_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def reputation(session: Session, user_id: int, role: str = "seller") -> tuple[float | None, int]:
    """(average stars, number of ratings) the user received in ``role``."""
    avg, count = session.execute(select(func.avg(Rating.stars), func.count(Rating.id))
                                 .where(Rating.ratee_id == user_id, Rating.ratee_role == role)).one()
    return (None if avg is None else round(float(avg), 2)), int(count)


def min_seller_rating(minimum: float) -> ColumnElement[bool]:
    """A listing condition: its seller's average rating as a seller is at least ``minimum``."""
    rated = (select(Rating.ratee_id).where(Rating.ratee_role == "seller").group_by(Rating.ratee_id)
             .having(func.avg(Rating.stars) >= minimum))
    return Listing.seller_id.in_(rated)
