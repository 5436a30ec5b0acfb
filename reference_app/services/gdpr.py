"""GDPR: a user's data as JSON, erasure, and retention.

Erasure anonymises personal data (email, name, password, 2FA seed, shipping
address and its hash, payout node, message and dispute texts, rating comments,
notifications, webhook endpoints) and keeps what the books need: the user row
(as ``erased-<id>``), orders, their timelines, disputes' outcomes and the
custodial ledger. It is refused, with the reason, while the user has an
escrow that is not final, leads an open auction or sells in one: erasing a
party mid-trade would leave the counterparty without anyone to ship to or pay.
A custodial balance left over stays on the ledger under the pseudonymous id.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.models import Dispute, DisputeMessage, Listing, Notification, Order, User
from ..store.models_market import Auction, Bid, Erasure, OrderMessage, Rating, WebhookDelivery, WebhookEndpoint
from . import accounts
from .custodial import ledger
from .errors import Conflict, DomainError, NotFound
from .lifecycle import TERMINAL
from .transitions import now

ERASED = "[erased]"
FINAL = [s.value for s in TERMINAL]


class ErasureRefused(DomainError):
    code, status = "erasure_refused", 409


def _iso(moment):
    return None if moment is None else moment.isoformat()


def export(ctx: AppContext, session: Session, user: User) -> dict:
    """Everything the marketplace holds about the user, decrypted where it is theirs."""
    orders = session.scalars(select(Order).where(or_(Order.buyer_id == user.id, Order.seller_id == user.id))
                             .order_by(Order.id)).all()
    balances = ledger.user_balances(session, user.id)
    return {
        "profile": {"id": user.id, "email": user.email, "display_name": user.display_name,
                    "roles": user.roles.split(","), "created_at": _iso(user.created_at), "blocked": user.blocked,
                    "address": None if user.address_enc is None else accounts.get_address(ctx, user), "two_factor": user.totp_enabled,
                    "payout_node_pubkey": user.node_pubkey},
        "orders": [{"id": o.id, "role": "buyer" if o.buyer_id == user.id else "seller", "state": o.state,
                    "escrow_mode": o.escrow_mode, "price_sats": o.price_sats, "fee_sats": o.fee_sats,
                    "created_at": _iso(o.created_at)} for o in orders],
        "messages": [{"order_id": m.order_id, "body": m.body, "at": _iso(m.at)}
                     for m in session.scalars(select(OrderMessage).where(OrderMessage.author_id == user.id))],
        "ratings_given": [{"order_id": r.order_id, "stars": r.stars, "comment": r.comment}
                          for r in session.scalars(select(Rating).where(Rating.rater_id == user.id))],
        "ratings_received": [{"order_id": r.order_id, "stars": r.stars, "as": r.ratee_role}
                             for r in session.scalars(select(Rating).where(Rating.ratee_id == user.id))],
        "bids": [{"auction_id": b.auction_id, "amount_sats": b.amount_sats, "status": b.status}
                 for b in session.scalars(select(Bid).where(Bid.bidder_id == user.id))],
        "notifications": [{"kind": n.kind, "message": n.message, "at": _iso(n.at)}
                          for n in session.scalars(select(Notification).where(Notification.user_id == user.id))],
        "webhooks": [e.url for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.user_id == user.id))],
        "balances": {"available_sats": balances.available, "held_sats": balances.held,
                     "inflight_sats": balances.inflight},
    }


def blockers(session: Session, user_id: int) -> list[str]:
    """Why the user cannot be erased now (empty when they can)."""
    why = [f"order {oid} is {state}" for oid, state in session.execute(
        select(Order.id, Order.state).where(or_(Order.buyer_id == user_id, Order.seller_id == user_id),
                                            Order.state.not_in(FINAL)).order_by(Order.id))]
    why += [f"auction {aid} is open" for aid in session.scalars(
        select(Auction.id).where(Auction.state == "OPEN",
                                 or_(Auction.seller_id == user_id, Auction.high_bidder_id == user_id)))]
    return why


def erase(ctx: AppContext, session: Session, user_id: int, by: User) -> dict:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    if session.scalar(select(Erasure.id).where(Erasure.user_id == user_id)):
        raise Conflict(f"user {user_id} was already erased")
    if user.has_role("admin") and user.id == by.id:
        raise ErasureRefused("an admin cannot erase their own account; another admin must")
    why = blockers(session, user_id)
    if why:
        raise ErasureRefused(f"user {user_id} has an open escrow or auction ({'; '.join(why)}); erasure would "
                             "leave the other party without a counterparty. Finish or cancel it first.",
                             open=why)
    user.email = f"erased-{user.id}@erased.invalid"
    user.display_name = "erased user"
    user.password_hash = "!erased:" + secrets.token_hex(16)
    user.blocked, user.token_version = True, user.token_version + 1
    user.totp_secret_enc, user.totp_enabled = None, False
    user.address_enc = user.address_hash = None
    user.node_pubkey = user.payout_rest_url = None
    user.payout_macaroon_enc = user.payout_tls_cert_enc = None
    session.execute(update(OrderMessage).where(OrderMessage.author_id == user_id).values(body=ERASED))
    session.execute(update(DisputeMessage).where(DisputeMessage.author_id == user_id).values(body=ERASED))
    session.execute(update(Dispute).where(Dispute.opened_by == user_id).values(reason=ERASED))
    session.execute(update(Rating).where(Rating.rater_id == user_id).values(comment=""))
    session.execute(update(Order).where(Order.buyer_id == user_id).values(buyer_address_hash=None))
    session.execute(update(Listing).where(Listing.seller_id == user_id).values(active=False))
    endpoints = select(WebhookEndpoint.id).where(WebhookEndpoint.user_id == user_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id.in_(endpoints)))
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id))
    mine = select(Notification.id).where(Notification.user_id == user_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.notification_id.in_(mine)))
    session.execute(delete(Notification).where(Notification.user_id == user_id))
    session.add(Erasure(user_id=user_id, requested_by=by.id))
    session.flush()
    balance = ledger.user_balances(session, user_id)
    return {"user_id": user_id, "erased": True, "retained_balance_sats": balance.total,
            "kept": ["orders", "order timelines", "ledger", "dispute outcomes"]}


def apply_retention(ctx: AppContext) -> dict[str, int]:
    """Drop read notifications past their retention and blank the chat of orders that ended long ago."""
    s = ctx.settings
    with ctx.db.session() as session:
        old = select(Notification.id).where(Notification.read.is_(True),
                                            Notification.at < now() - timedelta(days=s.notification_retention_days))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.notification_id.in_(old)))
        gone = session.execute(delete(Notification).where(Notification.id.in_(old))
                               .execution_options(synchronize_session=False)).rowcount or 0
        ended = select(Order.id).where(Order.state.in_(FINAL),
                                       Order.updated_at < now() - timedelta(days=s.message_retention_days))
        blanked = session.execute(update(OrderMessage).where(OrderMessage.order_id.in_(ended),
                                                             OrderMessage.body != ERASED).values(body=ERASED)
                                  .execution_options(synchronize_session=False)).rowcount or 0
    return {"notifications_deleted": gone, "messages_blanked": blanked}
