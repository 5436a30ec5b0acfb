"""Order, dispute and webhook schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listing_id: int = Field(gt=0)
    quantity: int = Field(default=1, ge=1, le=1000)


class HoldOut(BaseModel):
    payment_request: str
    payment_hash: str
    amount_sats: int
    cltv_expiry: int
    lnd_state: str
    htlc_expiry_height: int | None
    # Before funding: which wallets cannot pay a hold this long (their route CLTV cap), if any
    payer_notice: str | None = None


class PayoutOut(BaseModel):
    beneficiary: str
    amount_sats: int
    status: str
    attempts: int
    fee_sats: int
    payment_hash: str | None
    last_error: str | None


class OrderOut(BaseModel):
    id: int
    listing_id: int
    buyer_id: int
    seller_id: int
    quantity: int
    escrow_mode: str
    state: str
    price_sats: int
    fee_sats: int
    buyer_share_ppm: int | None
    courier: str | None
    tracking_number: str | None
    delivered_evidence: bool
    disputed: bool
    deadline_at: datetime | None
    deadline_height: int | None
    allowed_events: list[str]
    hold: HoldOut | None
    payouts: list[PayoutOut] = []
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int


class EventOut(BaseModel):
    event: str
    from_state: str
    to_state: str
    actor: str
    height: int | None
    detail: str
    at: datetime


class ShipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    courier: str = Field(min_length=1, max_length=40)
    tracking_number: str = Field(min_length=4, max_length=80, pattern=r"^[A-Za-z0-9-]+$")


class PayoutInvoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_request: str = Field(min_length=20, max_length=2000, pattern=r"^[A-Za-z0-9]+$")  # bech32 only


class HandInOut(BaseModel):
    beneficiary: str
    payment_request: str = Field(description="the invoice the payout will pay: the one just handed in")
    payment_hash: str
    replaced: str | None = Field(description="the earlier invoice, never paid, that this one replaced (none: "
                                             "it replaced nothing)")


class PayoutInvoiceOut(OrderOut):
    payout_invoice: HandInOut


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=5, max_length=2000)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=5000)


class RulingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ruling: Literal["release", "refund", "split"]
    buyer_share_pct: float | None = Field(default=None, gt=0, lt=100)


class MessageOut(BaseModel):
    author_id: int
    body: str
    at: datetime


class DisputeOut(BaseModel):
    order_id: int
    opened_by: int
    reason: str
    ruling: str | None
    buyer_share_ppm: int | None
    arbiter_id: int | None
    opened_at: datetime
    ruled_at: datetime | None
    messages: list[MessageOut]
    evidence: list[MessageOut] = Field(default=[], description="the order's buyer-seller thread")


class WebhookResult(BaseModel):
    order_id: int
    state: str
    applied: bool
