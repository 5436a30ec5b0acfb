"""The admin hub: metrics, transaction monitoring and the financial export.

GMV is the value of sales that completed (released in full, or the seller's
part of a split). Locked sats are the prices of orders whose escrow holds money
now (funded, not final), by escrow mode, plus leading auction bids (custodial
holds). Transactions are the custodial ledger's transfers; a non-admin sees
only the transfers that touch their own accounts, and only their own legs.
"""

from __future__ import annotations

import csv
import io
from typing import Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.models import Dispute, Order, User
from ..store.models_ledger import LedgerAccount, LedgerEntry, LedgerTransfer
from ..store.models_market import Auction
from .errors import DomainError
from .lifecycle import S
from .orders import PPM

LOCKED = {S.FUNDED, S.SHIPPED, S.DELIVERED, S.DISPUTED, S.HELD_IN_CUSTODY, S.RELEASE_PENDING,
          S.REFUND_PENDING, S.SPLIT_PENDING}
CSV_FIELDS = ["transfer_id", "created_at", "key", "kind", "account", "amount_sats", "memo"]


def metrics(ctx: AppContext, session: Session) -> dict:
    by_state = dict(session.execute(select(Order.state, func.count()).group_by(Order.state)).all())
    released = session.scalar(select(func.coalesce(func.sum(Order.price_sats), 0))
                              .where(Order.state == S.RELEASED.value)) or 0
    split = sum(o.price_sats - o.price_sats * (o.buyer_share_ppm or 0) // PPM
                for o in session.scalars(select(Order).where(Order.state == S.SPLIT.value)))
    locked = dict(session.execute(select(Order.escrow_mode, func.coalesce(func.sum(Order.price_sats), 0))
                                  .where(Order.state.in_([s.value for s in LOCKED]))
                                  .group_by(Order.escrow_mode)).all())
    bids = session.scalar(select(func.coalesce(func.sum(Auction.high_bid_sats), 0))
                          .where(Auction.state == "OPEN")) or 0
    if bids:
        locked["custodial_bids"] = int(bids)
    fees = session.scalar(select(func.coalesce(func.sum(Order.fee_sats), 0))
                          .where(Order.state.in_([S.RELEASED.value, S.SPLIT.value]))) or 0
    return {
        "gmv_sats": int(released) + int(split),
        "fees_earned_sats": int(fees),
        "orders_by_state": {k: int(v) for k, v in sorted(by_state.items())},
        "orders_total": int(sum(by_state.values())),
        "locked_sats_by_mode": {k: int(v) for k, v in sorted(locked.items())},
        "open_disputes": int(session.scalar(select(func.count()).select_from(Dispute)
                                            .where(Dispute.ruling.is_(None))) or 0),
        "open_auctions": int(session.scalar(select(func.count()).select_from(Auction)
                                            .where(Auction.state == "OPEN")) or 0),
        "users": int(session.scalar(select(func.count()).select_from(User)) or 0),
        "reconciliation": reconciliation(ctx),
    }


def reconciliation(ctx: AppContext) -> dict:
    mode = ctx.modes.get("custodial")
    if mode is None:
        return {"status": "not_applicable", "detail": "no custodial mode (the app has no bitcoind)"}
    try:
        report = mode.reconcile()
    except DomainError as exc:
        return {"status": "unavailable", "detail": exc.message}
    return {"status": "ok" if report.ok else "mismatch", "mismatches": len(report.mismatches),
            "totals": report.totals}


def _rows(session: Session, user: User | None, limit: int | None, offset: int = 0):
    query = (select(LedgerTransfer.id, LedgerTransfer.created_at, LedgerTransfer.key, LedgerTransfer.kind,
                    LedgerAccount.name, LedgerEntry.amount, LedgerTransfer.memo)
             .join(LedgerEntry, LedgerEntry.transfer_id == LedgerTransfer.id)
             .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id))
    if user is not None:
        query = query.where(LedgerAccount.user_id == user.id)
    query = query.order_by(LedgerTransfer.id.desc(), LedgerAccount.name)
    if limit is not None:
        ids = select(LedgerTransfer.id).join(LedgerEntry, LedgerEntry.transfer_id == LedgerTransfer.id)
        if user is not None:
            ids = ids.join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id).where(
                LedgerAccount.user_id == user.id)
        page = ids.distinct().order_by(LedgerTransfer.id.desc()).limit(limit).offset(offset)
        query = query.where(LedgerTransfer.id.in_(page.scalar_subquery()))
    return session.execute(query).all()


def scope(user: User) -> User | None:
    """Admins see every transaction; anyone else only their own."""
    return None if user.has_role("admin") else user


def transactions(session: Session, user: User, limit: int, offset: int) -> list[dict]:
    out: dict[int, dict] = {}
    for tid, at, key, kind, account, amount, memo in _rows(session, scope(user), limit, offset):
        row = out.setdefault(tid, {"id": tid, "at": at, "key": key, "kind": kind, "memo": memo, "legs": []})
        row["legs"].append({"account": account, "amount_sats": int(amount)})
    return list(out.values())


def export_csv(session: Session, user: User) -> Iterator[str]:
    """The financial activity as CSV: one line per ledger entry, newest transfer first."""
    rows = _rows(session, scope(user), None)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for tid, at, key, kind, account, amount, memo in rows:
        writer.writerow([tid, at.isoformat() if at else "", key, kind, account, int(amount), memo])
    yield buffer.getvalue()
