"""Marketplace tables beyond orders: auctions and their bids, ratings, the
order chat, outgoing webhook endpoints and deliveries, and GDPR erasures.

Bids are backed by custodial ledger holds (``auction:<id>:bid:<bid id>:hold``);
the rows here record which bid leads, which were outbid (their hold released)
and which won (its hold moved into the order's escrow).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime, utcnow


class Auction(Base):
    """An English auction of one listing: OPEN until ``end_height``, then CLOSED with an outcome
    (sold, no_bids, reserve_not_met). ``version`` guards every change (compare-and-swap)."""

    __tablename__ = "auctions"
    id: Mapped[int] = mapped_column(primary_key=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(10), default="OPEN", index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    start_price_sats: Mapped[int] = mapped_column(BigInteger)
    reserve_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    min_increment_sats: Mapped[int] = mapped_column(BigInteger)
    end_height: Mapped[int] = mapped_column(Integer, index=True)
    extend_blocks: Mapped[int] = mapped_column(Integer)       # anti-sniping window and extension
    high_bid_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    high_bid_sats: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    high_bidder_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Bid(Base):
    """LEADING (its hold stands) -> OUTBID (hold released at once) | WON (hold moved into the
    order's escrow) | RELEASED (the auction closed unsold). ``client_key`` makes a retry idempotent."""

    __tablename__ = "auction_bids"
    id: Mapped[int] = mapped_column(primary_key=True)
    auction_id: Mapped[int] = mapped_column(ForeignKey("auctions.id"), index=True)
    bidder_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="LEADING")
    height: Mapped[int] = mapped_column(Integer)
    client_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    __table_args__ = (UniqueConstraint("auction_id", "bidder_id", "client_key", name="uq_bid_client_key"),)


class Rating(Base):
    """One party's rating of the other after a terminal order: once per order and rater."""

    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ratee_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    ratee_role: Mapped[str] = mapped_column(String(10))        # seller | buyer
    stars: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    __table_args__ = (UniqueConstraint("order_id", "rater_id", name="uq_rating_once"),)


class OrderMessage(Base):
    """The buyer-seller thread of an order; dispute evidence the arbiter reads."""

    __tablename__ = "order_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WebhookEndpoint(Base):
    """Where a user wants their notifications POSTed, HMAC-signed with ``secret_enc``."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One notification to one endpoint: PENDING -> DELIVERED | FAILED (after the last retry)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="PENDING", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (UniqueConstraint("endpoint_id", "notification_id", name="uq_delivery_once"),)


class Erasure(Base):
    """A GDPR erasure: the user row stays (ledger and orders point at it), anonymised."""

    __tablename__ = "gdpr_erasures"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
