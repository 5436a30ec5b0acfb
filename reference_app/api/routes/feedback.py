"""Ratings after an order ends, reputation, and the buyer-seller thread of each order."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from sqlalchemy.orm import Session

from ...services import messaging, orders, ratings
from ...store.models import User
from ..routing import Route
from ..deps import current_user, DbSession
from ..params import Id
from ..schemas.market import OrderMessageIn, OrderMessageOut, RatingIn, RatingOut, ReputationOut

router = APIRouter(route_class=Route, tags=["feedback"])


@router.post("/orders/{order_id}/rating", status_code=status.HTTP_201_CREATED, response_model=RatingOut)
def rate(order_id: Id, body: RatingIn, user: User = Depends(current_user),
         session: Session = DbSession) -> RatingOut:
    """Rate the other party of an order that has ended: once, by its buyer or its seller."""
    return RatingOut.of(ratings.rate(session, order_id, user, body.stars, body.comment))


@router.get("/users/{user_id}/reputation", response_model=ReputationOut)
async def reputation(user_id: Id, session: Session = DbSession) -> ReputationOut:
    ratings.require_user(session, user_id)
    seller_avg, seller_n = ratings.reputation(session, user_id, "seller")
    buyer_avg, buyer_n = ratings.reputation(session, user_id, "buyer")
    return ReputationOut(user_id=user_id, seller_rating=seller_avg, seller_ratings=seller_n,
                         buyer_rating=buyer_avg, buyer_ratings=buyer_n)


@router.get("/orders/{order_id}/messages", response_model=list[OrderMessageOut])
async def read_thread(order_id: Id, user: User = Depends(current_user),
                      session: Session = DbSession) -> list[OrderMessageOut]:
    """The order's thread: its buyer and seller, and its arbiter once it is disputed."""
    return [OrderMessageOut.of(m) for m in messaging.thread(session, orders.get(session, order_id), user)]


@router.post("/orders/{order_id}/messages", status_code=status.HTTP_201_CREATED, response_model=OrderMessageOut)
def post_message(order_id: Id, body: OrderMessageIn, user: User = Depends(current_user),
                 session: Session = DbSession) -> OrderMessageOut:
    return OrderMessageOut.of(messaging.post(session, orders.get(session, order_id), user, body.body))
