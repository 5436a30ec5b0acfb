"""Auctions, ratings, order messages, webhooks endpoints, admin and GDPR bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from .money import Sats
from ...store.models_market import Auction, Bid, OrderMessage, Rating


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuctionIn(In):
    listing_id: int = Field(gt=0)
    start_price_sats: Sats = Field(gt=0)
    reserve_sats: Sats = Field(default=0, ge=0)
    min_increment_sats: Sats = Field(default=1_000, gt=0)
    duration_blocks: int = Field(default=144, gt=0, description="the auction ends this many blocks from now")
    extend_blocks: int = Field(default=3, ge=0, description="a bid this close to the end extends it this far")


class BidIn(In):
    amount_sats: Sats = Field(gt=0)


class BidOut(BaseModel):
    id: int
    bidder_id: int
    amount_sats: int
    status: str
    height: int
    at: datetime

    @classmethod
    def of(cls, b: Bid) -> "BidOut":
        return cls(id=b.id, bidder_id=b.bidder_id, amount_sats=b.amount_sats, status=b.status, height=b.height,
                   at=b.at)


class AuctionOut(BaseModel):
    id: int
    listing_id: int
    seller_id: int
    state: str
    start_price_sats: int
    reserve_met: bool
    min_increment_sats: int
    minimum_bid_sats: int | None
    end_height: int
    extend_blocks: int
    high_bid_sats: int | None
    high_bidder_id: int | None
    outcome: str | None
    order_id: int | None
    bids: list[BidOut] = []

    @classmethod
    def of(cls, a: Auction, minimum: int | None, bids: list[Bid] | None = None) -> "AuctionOut":
        return cls(id=a.id, listing_id=a.listing_id, seller_id=a.seller_id, state=a.state,
                   start_price_sats=a.start_price_sats,
                   reserve_met=a.high_bid_sats is not None and a.high_bid_sats >= a.reserve_sats,
                   min_increment_sats=a.min_increment_sats, minimum_bid_sats=minimum, end_height=a.end_height,
                   extend_blocks=a.extend_blocks, high_bid_sats=a.high_bid_sats, high_bidder_id=a.high_bidder_id,
                   outcome=a.outcome, order_id=a.order_id, bids=[BidOut.of(b) for b in bids or []])


class RatingIn(In):
    stars: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2_000)


class RatingOut(BaseModel):
    order_id: int
    rater_id: int
    ratee_id: int
    ratee_role: str
    stars: int
    comment: str
    at: datetime

    @classmethod
    def of(cls, r: Rating) -> "RatingOut":
        return cls(order_id=r.order_id, rater_id=r.rater_id, ratee_id=r.ratee_id, ratee_role=r.ratee_role,
                   stars=r.stars, comment=r.comment, at=r.at)


class ReputationOut(BaseModel):
    user_id: int
    seller_rating: float | None
    seller_ratings: int
    buyer_rating: float | None
    buyer_ratings: int


class OrderMessageIn(In):
    body: str = Field(min_length=1, max_length=5_000)


class OrderMessageOut(BaseModel):
    id: int
    order_id: int
    author_id: int
    body: str
    at: datetime

    @classmethod
    def of(cls, m: OrderMessage) -> "OrderMessageOut":
        return cls(id=m.id, order_id=m.order_id, author_id=m.author_id, body=m.body, at=m.at)


class WebhookIn(In):
    url: str = Field(min_length=8, max_length=500)


class WebhookOut(BaseModel):
    id: int
    url: str
    active: bool
    secret: str | None = Field(None, description="the HMAC signing secret, shown only when created")
