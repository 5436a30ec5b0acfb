"""Auctions over HTTP: sellers open them, buyers bid from their custodial balance."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, status
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import auctions
from ...services.accounts import Principal
from ...store.models import User
from ...store.models_market import Auction
from ..routing import Route
from ..deps import current_user, get_ctx, DbSession, require_role
from ..params import Id
from .wallet import account_holder
from ..schemas.market import AuctionIn, AuctionOut, BidIn

router = APIRouter(route_class=Route, prefix="/auctions", tags=["auctions"])
BID_KEY = Header(None, alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
                 description="Repeating a bid with the same key returns the first bid.")


def auction_out(session: Session, auction: Auction) -> AuctionOut:
    minimum = auctions.minimum_bid(auction) if auction.state == "OPEN" else None
    return AuctionOut.of(auction, minimum, auctions.bids_of(session, auction.id))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AuctionOut)
def create_auction(body: AuctionIn, seller: Principal = Depends(require_role("seller")),
                   ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> AuctionOut:
    """Auction one unit of your custodial listing; it ends ``duration_blocks`` from now."""
    auction = auctions.create(ctx, session, seller, **body.model_dump())
    return auction_out(session, auction)


@router.get("", response_model=list[AuctionOut])
async def list_auctions(state: str = Query("OPEN", pattern="^(OPEN|CLOSED)$"), limit: int = Query(50, ge=1, le=200),
                        session: Session = DbSession) -> list[AuctionOut]:
    return [auction_out(session, a) for a in auctions.listing(session, state, limit)]


@router.get("/{auction_id}", response_model=AuctionOut)
async def read_auction(auction_id: Id, session: Session = DbSession) -> AuctionOut:
    return auction_out(session, auctions.get(session, auction_id))


@router.post("/{auction_id}/bids", status_code=status.HTTP_201_CREATED, response_model=AuctionOut)
def place_bid(auction_id: Id, body: BidIn, user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
              session: Session = DbSession, key: str | None = BID_KEY) -> AuctionOut:
    """Bid at least the minimum; the amount is held from your balance and the bid you beat is released."""
    auction, _bid = auctions.bid(ctx, session, auction_id, user, body.amount_sats, key)
    return auction_out(session, auction)


@router.post("/{auction_id}/close", response_model=AuctionOut)
def close_auction(auction_id: Id, _user: User = Depends(account_holder),
                  ctx: AppContext = Depends(get_ctx)) -> AuctionOut:
    """Close an auction whose end height has passed (the market loop does this too); repeating is harmless."""
    height = auctions.chain_height(ctx)
    with ctx.db.session() as session:
        auction = auctions.close(ctx, session, auctions.get(session, auction_id), height)
        out = auction_out(session, auction)
    if out.order_id and out.outcome == "sold":
        for callback in ctx.on_order_created:
            callback(out.order_id)
    return out
