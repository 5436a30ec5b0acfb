"""A user's notifications: the outbox rows that order transitions write, read back."""

from __future__ import annotations

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from ..store.models import Notification, User


def notifications(session: Session, user: User, unread_only: bool, limit: int,
                  offset: int) -> tuple[list[Notification], int]:
    """One page, newest first, with the total that matches the filter."""
    query = _mine(user, unread_only)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    # id breaks ties between rows written in the same transaction (same timestamp).
    page = session.scalars(query.order_by(Notification.at.desc(), Notification.id.desc())
                           .limit(limit).offset(offset)).all()
    return list(page), total


def mark_all_read(session: Session, user: User) -> int:
    """Mark every unread notification read; returns how many changed."""
    result = session.execute(update(Notification)
                             .where(Notification.user_id == user.id, Notification.read.is_(False))
                             .values(read=True))
    return result.rowcount or 0


def _mine(user: User, unread_only: bool) -> Select:
    query = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        query = query.where(Notification.read.is_(False))
    return query
