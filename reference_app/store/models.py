"""Tables. Money is integer sats; secrets (preimages, addresses, TOTP seeds,
payout macaroons) are stored encrypted; every order change leaves an event."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """A moment, stored as ``DateTime(timezone=True)``, that reads back aware on every database.

    PostgreSQL's ``timestamptz`` comes back aware. SQLite has no zone: SQLAlchemy stores the
    fields as text and reads them back naive, and every reader had to put UTC on them (in
    Python, per value: a pydantic validator on each response time was 7 % of a listing
    page's CPU). Every time this app stores is ``utcnow()``'s, so the text is UTC; it is
    read with the zone in one C call."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def result_processor(self, dialect, coltype):
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse = datetime.fromisoformat

        def aware(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                return parse(value + "+00:00")
            except ValueError:  # text that carries its own zone
                moment = parse(value)
                return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return aware


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[str] = mapped_column(String(100))          # comma-separated: buyer,seller,courier,arbiter,admin
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # 2FA
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    token_version: Mapped[int] = mapped_column(Integer, default=0)   # bump to revoke refresh tokens
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # a code counts once
    # profile: shipping address encrypted at rest, plus its hash for courier matching
    address_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    address_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # payout method: the user's own LND (invoice macaroon) that the hub asks for payout invoices
    node_pubkey: Mapped[str | None] = mapped_column(String(66), nullable=True)
    payout_rest_url: Mapped[str | None] = mapped_column(String(300), nullable=True)
    payout_macaroon_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    payout_tls_cert_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    def has_role(self, role: str) -> bool:
        return role in self.roles.split(",")


class RefreshFamily(Base):
    """One login's chain of refresh tokens: only ``current_jti`` may be used, once.

    A refresh token of the family that is not the current one was used before, so
    someone holds a copy: the family is revoked (see services/accounts.refresh)."""

    __tablename__ = "refresh_families"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    current_jti: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Listing(Base):
    __tablename__ = "listings"
    id: Mapped[int] = mapped_column(primary_key=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(60), index=True)
    price_sats: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int] = mapped_column(Integer)
    escrow_mode: Mapped[str] = mapped_column(String(20), default="ln_hold")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    # newest first (the default page, and a search's order without words): read in index order,
    # not sorted
    __table_args__ = (Index("ix_listings_price", "price_sats"), Index("ix_listings_newest", "created_at", "id"))


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    escrow_mode: Mapped[str] = mapped_column(String(20), default="ln_hold")
    state: Mapped[str] = mapped_column(String(24), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # amounts: price is escrowed; fee is the marketplace's; payout = price - fee
    price_sats: Mapped[int] = mapped_column(BigInteger)
    fee_sats: Mapped[int] = mapped_column(BigInteger)
    buyer_share_ppm: Mapped[int | None] = mapped_column(Integer, nullable=True)   # split rulings
    # delivery
    buyer_address_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    courier: Mapped[str | None] = mapped_column(String(40), nullable=True)
    tracking_number: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    delivered_evidence: Mapped[bool] = mapped_column(Boolean, default=False)
    disputed: Mapped[bool] = mapped_column(Boolean, default=False)
    custody_from: Mapped[str | None] = mapped_column(String(24), nullable=True)
    # deadline of the current state, in wall-clock time and in block height
    deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    deadline_height: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    hold: Mapped["HoldInvoice | None"] = relationship(back_populates="order", uselist=False, lazy="joined")


class HoldInvoice(Base):
    """The buyer's payment, held by the hub's LND until release or refund."""

    __tablename__ = "hold_invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    payment_hash: Mapped[str] = mapped_column(String(64), unique=True)
    preimage_enc: Mapped[bytes] = mapped_column(LargeBinary)
    payment_request: Mapped[str] = mapped_column(Text)
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    cltv_expiry: Mapped[int] = mapped_column(Integer)
    created_height: Mapped[int] = mapped_column(Integer)
    # node truth as last seen: OPEN, ACCEPTED, SETTLED, CANCELED
    lnd_state: Mapped[str] = mapped_column(String(12), default="OPEN")
    amt_paid_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    htlc_expiry_height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    order: Mapped[Order] = relationship(back_populates="hold")


class Payout(Base):
    """One outgoing payment per order and beneficiary: the at-most-once marker."""

    __tablename__ = "payouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    beneficiary: Mapped[str] = mapped_column(String(10))      # seller | buyer
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    payment_request: Mapped[str | None] = mapped_column(Text, nullable=True)
    payment_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # PENDING (no attempt yet), IN_FLIGHT, SUCCEEDED, FAILED (may retry with a new invoice)
    status: Mapped[str] = mapped_column(String(12), default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    fee_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    __table_args__ = (UniqueConstraint("order_id", "beneficiary", name="uq_payout_once"),)


class OrderEvent(Base):
    """The timeline: every transition with its actor and the chain height."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(60))            # user:<id>, worker, guardian, courier:<name>
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Notification(Base):
    """Outbox row, written in the same transaction as the change it reports."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # the outbox flag: False until the dispatcher has queued its webhook deliveries
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class Dispute(Base):
    __tablename__ = "disputes"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    opened_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    ruling: Mapped[str | None] = mapped_column(String(10), nullable=True)       # release | refund | split
    buyer_share_ppm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    arbiter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ruled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class DisputeMessage(Base):
    __tablename__ = "dispute_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WebhookEvent(Base):
    """Courier events seen, for replay protection (event id unique per courier)."""

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    courier: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    __table_args__ = (UniqueConstraint("courier", "event_id", name="uq_webhook_event"),)
