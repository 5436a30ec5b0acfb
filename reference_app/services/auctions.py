"""English auctions (dBay): a reserve, a minimum increment, and an anti-sniping extension.

Time is the chain's: an auction ends at ``end_height``; a bid placed within
``extend_blocks`` of the end moves the end to ``height + extend_blocks``.

Every bid is backed by a custodial ledger hold (``auction:<id>:bid:<bid>:hold``,
available -> held), posted in the bid's own transaction. The bid it beats has
its hold released (``...:release``, held -> available) in that same
transaction, so the outbid bidder's money is free the moment the new bid
commits, and a bid that cannot be held (InsufficientFunds) changes nothing.

Each change claims the auction with compare-and-swap on ``(state, version)``,
as orders do (transitions.apply): of two racing bids one wins, the other gets a
Conflict. A bid may carry a client key: repeating it returns the first bid.

Closing (by the market loop once the end height is reached, or ``POST
/auctions/{id}/close``) is idempotent. A sale releases the winning bid's hold
and opens the order's custodial escrow through the custodial mode's ``open``
in the same transaction, so the winner's money never sits unheld in between.
No bids or an unmet reserve close cleanly: holds released, stock returned.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.db import Prepared
from ..store.models import Listing, User
from ..store.models_market import Auction, Bid
from . import listings, outbox, records
from .custodial import ledger
from .custodial.ledger import user_account
from .errors import Conflict, DomainError, NodeUnavailable, NotFound, PermissionDenied, ValidationFailed
from .lifecycle import S
from .orders import fee_for
from .records import OrderRecord
from .transitions import now

log = logging.getLogger("escrowlab.auctions")
MODE = "custodial"
MAX_DURATION_BLOCKS = 10_000


class BidTooLow(DomainError):
    """A bid below the start price or below the leading bid plus the minimum increment."""
    code, status = "bid_too_low", 422


class AuctionClosed(DomainError):
    """The auction has ended (or was closed): no more bids."""
    code, status = "auction_closed", 409


class AuctionNotEnded(DomainError):
    code, status = "auction_not_ended", 409


def chain_height(ctx: AppContext) -> int:
    """The tip, fresh from the app's bitcoind (auctions end by height)."""
    if ctx.chain is not None:
        return int(ctx.chain.getblockcount())
    height = ctx.tip()
    if height is None:
        raise NodeUnavailable("auctions need a node to tell the chain height, and this app has none")
    return height


def create(ctx: AppContext, session: Session, seller: User, listing_id: int, start_price_sats: int,
           reserve_sats: int, min_increment_sats: int, duration_blocks: int, extend_blocks: int) -> Auction:
    """Auction one unit of a custodial listing (one unit of stock is set aside until the close)."""
    s = ctx.settings
    listing = listings.get(session, listing_id)
    listings.authorize(seller, listing, "update")
    if listing.escrow_mode != MODE:
        raise ValidationFailed("auctions are paid from custodial balances: the listing's escrow_mode must be "
                               f"custodial, not {listing.escrow_mode}", field="listing_id")
    if MODE not in ctx.modes:
        raise NodeUnavailable("custodial mode is not available here (the app has no bitcoind)")
    if not s.min_price_sats <= start_price_sats <= s.max_price_sats:
        raise ValidationFailed(f"start_price_sats must be between {s.min_price_sats} and {s.max_price_sats}",
                               field="start_price_sats")
    if not 0 <= reserve_sats <= s.max_price_sats:
        raise ValidationFailed(f"reserve_sats must be between 0 and {s.max_price_sats}", field="reserve_sats")
    if not 1 <= min_increment_sats <= s.max_price_sats:
        raise ValidationFailed("min_increment_sats must be at least 1", field="min_increment_sats")
    if not 1 <= duration_blocks <= MAX_DURATION_BLOCKS:
        raise ValidationFailed(f"duration_blocks must be between 1 and {MAX_DURATION_BLOCKS}",
                               field="duration_blocks")
    if not 0 <= extend_blocks <= duration_blocks:
        raise ValidationFailed("extend_blocks must be between 0 and duration_blocks", field="extend_blocks")
    taken = session.execute(update(Listing).where(Listing.id == listing.id, Listing.stock >= 1)
                            .values(stock=Listing.stock - 1))
    if taken.rowcount != 1:
        raise Conflict(f"listing {listing.id} is out of stock")
    auction = Auction(listing_id=listing.id, seller_id=seller.id, state="OPEN", version=0,
                      start_price_sats=start_price_sats, reserve_sats=reserve_sats,
                      min_increment_sats=min_increment_sats, end_height=chain_height(ctx) + duration_blocks,
                      extend_blocks=extend_blocks)
    session.add(auction)
    session.flush()
    return auction


def get(session: Session, auction_id: int) -> Auction:
    auction = session.get(Auction, auction_id) if 1 <= auction_id <= listings.ID_MAX else None
    if auction is None:
        raise NotFound(f"auction {auction_id} does not exist")
    return auction


def listing(session: Session, state: str, limit: int) -> list[Auction]:
    """Auctions in ``state`` (OPEN or CLOSED), newest first."""
    return list(session.scalars(select(Auction).where(Auction.state == state).order_by(Auction.id.desc()).limit(limit)))


def bids_of(session: Session, auction_id: int) -> list[Bid]:
    return list(session.scalars(select(Bid).where(Bid.auction_id == auction_id).order_by(Bid.id)))


def minimum_bid(auction: Auction) -> int:
    if auction.high_bid_sats is None:
        return auction.start_price_sats
    return auction.high_bid_sats + auction.min_increment_sats


def _claim(session: Session, auction: Auction, **values) -> None:
    """Compare-and-swap on (state OPEN, version): the loser of a race changes nothing."""
    result = session.execute(update(Auction).where(Auction.id == auction.id, Auction.state == "OPEN",
                                                   Auction.version == auction.version)
                             .values(version=auction.version + 1, **values)
                             .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        session.refresh(auction)
        raise Conflict(f"auction {auction.id} changed concurrently (now {auction.state}); try again",
                       state=auction.state)
    session.refresh(auction)


def _hold(session: Session, bid: Bid) -> None:
    ledger.transfer(session, f"auction:{bid.auction_id}:bid:{bid.id}:hold", "bid_hold",
                    [(user_account(bid.bidder_id, "available"), -bid.amount_sats),
                     (user_account(bid.bidder_id, "held"), bid.amount_sats)], memo=f"auction {bid.auction_id}")


def _release(session: Session, bid: Bid, status: str) -> None:
    ledger.transfer(session, f"auction:{bid.auction_id}:bid:{bid.id}:release", "bid_release",
                    [(user_account(bid.bidder_id, "held"), -bid.amount_sats),
                     (user_account(bid.bidder_id, "available"), bid.amount_sats)], memo=f"auction {bid.auction_id}")
    bid.status = status


def _notify(session: Session, user_id: int, kind: str, message: str, order_id: int | None = None) -> None:
    outbox.notify(session, (user_id,), kind, message, order_id)


def bid(ctx: AppContext, session: Session, auction_id: int, bidder: User, amount_sats: int,
        client_key: str | None = None) -> tuple[Auction, Bid]:
    """Place a bid: validate, claim the auction (CAS), release the beaten hold, hold this one."""
    auction = get(session, auction_id)
    if client_key:
        seen = session.scalar(select(Bid).where(Bid.auction_id == auction.id, Bid.bidder_id == bidder.id,
                                                Bid.client_key == client_key))
        if seen is not None:
            if seen.amount_sats != amount_sats:
                raise Conflict(f"bid key {client_key!r} was already used for {seen.amount_sats} sats",
                               field="Idempotency-Key")
            return auction, seen
    if bidder.id == auction.seller_id:
        raise PermissionDenied("you cannot bid on your own auction")
    if not bidder.address_hash:
        raise ValidationFailed("set a shipping address first (PUT /me/address): a won auction ships to it",
                               field="address")
    height = chain_height(ctx)
    if auction.state != "OPEN" or height >= auction.end_height:
        raise AuctionClosed(f"auction {auction.id} ended at height {auction.end_height} (now {height}); "
                            "no more bids", end_height=auction.end_height)
    minimum = minimum_bid(auction)
    if amount_sats < minimum:
        why = ("the start price" if auction.high_bid_sats is None else
               f"the leading {auction.high_bid_sats} plus the increment {auction.min_increment_sats}")
        raise BidTooLow(f"a bid must be at least {minimum} sats ({why}); {amount_sats} is too low",
                        field="amount_sats", minimum_sats=minimum)
    if amount_sats > ctx.settings.max_price_sats:
        raise ValidationFailed(f"amount_sats must be at most {ctx.settings.max_price_sats}", field="amount_sats")
    previous = session.get(Bid, auction.high_bid_id) if auction.high_bid_id else None
    new = Bid(auction_id=auction.id, bidder_id=bidder.id, amount_sats=amount_sats, status="LEADING",
              height=height, client_key=client_key)
    session.add(new)
    session.flush()
    end = auction.end_height
    if auction.extend_blocks and end - height <= auction.extend_blocks:
        end = height + auction.extend_blocks    # anti-sniping
    _claim(session, auction, high_bid_id=new.id, high_bid_sats=amount_sats, high_bidder_id=bidder.id,
           end_height=end)
    if previous is not None:
        _release(session, previous, "OUTBID")   # first: a bidder raising their own bid reuses the money
        if previous.bidder_id != bidder.id:
            _notify(session, previous.bidder_id, "auction.outbid",
                    f"Auction #{auction.id}: you were outbid ({amount_sats} sats); your "
                    f"{previous.amount_sats} sats are available again.")
    _hold(session, new)
    _notify(session, auction.seller_id, "auction.bid", f"Auction #{auction.id}: new bid of {amount_sats} sats.")
    session.flush()
    return auction, new


def close(ctx: AppContext, session: Session, auction: Auction, height: int) -> Auction:
    """End the auction (again: a no-op). A met reserve opens the winner's custodial escrow."""
    if auction.state == "CLOSED":
        return auction
    if height < auction.end_height:
        raise AuctionNotEnded(f"auction {auction.id} ends at height {auction.end_height} (now {height})",
                              end_height=auction.end_height)
    leading = session.get(Bid, auction.high_bid_id) if auction.high_bid_id else None
    if leading is None:
        outcome = "no_bids"
    elif leading.amount_sats < auction.reserve_sats:
        outcome = "reserve_not_met"
    else:
        outcome = "sold"
    try:
        _claim(session, auction, state="CLOSED", outcome=outcome, closed_at=now())
    except Conflict:
        if auction.state == "CLOSED":
            return auction  # closed by the market loop (or another request) a moment ago
        raise
    if outcome != "sold":
        if leading is not None:
            _release(session, leading, "RELEASED")
            _notify(session, leading.bidder_id, "auction.unsold",
                    f"Auction #{auction.id} closed below the reserve; your {leading.amount_sats} sats are "
                    "available again.")
        session.execute(update(Listing).where(Listing.id == auction.listing_id).values(stock=Listing.stock + 1))
        _notify(session, auction.seller_id, "auction.unsold", f"Auction #{auction.id} closed unsold ({outcome}).")
        session.flush()
        return auction
    order = _open_order(ctx, session, auction, leading)
    auction.order_id = order.id
    _notify(session, leading.bidder_id, "auction.won",
            f"Auction #{auction.id}: you won at {leading.amount_sats} sats; order #{order.id} is in escrow.",
            order.id)
    session.flush()
    return auction


def _open_order(ctx: AppContext, session: Session, auction: Auction, winner_bid: Bid) -> OrderRecord:
    """The winner's order: the bid's hold is released and re-held as the order's escrow, in one transaction."""
    buyer = session.get(User, winner_bid.bidder_id)
    _release(session, winner_bid, "WON")
    price = winner_bid.amount_sats
    session.flush()  # the release, before the order's Core INSERT (as the ORM's autoflush would)
    order = records.insert(session, listing_id=auction.listing_id, buyer_id=buyer.id, seller_id=auction.seller_id,
                           quantity=1, escrow_mode=MODE, state=S.CREATED.value, price_sats=price,
                           fee_sats=fee_for(ctx.settings, price), buyer_address_hash=buyer.address_hash)
    ctx.modes[MODE].open(session, order, buyer, None)
    return order


# The end of the open auction that ends first (None: none is open). The market loop reads it
# before it asks the node for the height: with no auction open, its pass (two a second) made a
# bitcoind call for nothing.
_FIRST_END = Prepared(select(func.min(Auction.end_height)).where(Auction.state == "OPEN"))


def close_due(ctx: AppContext) -> list[int]:
    """Close every open auction whose end height has passed; returns the orders opened."""
    if MODE not in ctx.modes:
        return []
    (first_end,), = _FIRST_END.read(ctx.db, {})
    if first_end is None:
        return []
    height = chain_height(ctx)
    if first_end > height:
        return []
    with ctx.db.session(write=False) as s:
        due = s.scalars(select(Auction.id).where(Auction.state == "OPEN", Auction.end_height <= height)).all()
    opened = []
    for auction_id in due:
        try:
            with ctx.db.session() as session:
                auction = close(ctx, session, get(session, auction_id), height)
                if auction.order_id:
                    opened.append(auction.order_id)
        except DomainError as exc:
            log.warning("closing auction %s: %s (retrying next pass)", auction_id, exc.message)
    for order_id in opened:
        for callback in ctx.on_order_created:
            callback(order_id)
    return opened
