"""Escrow moves inside the ledger, for orders paid from custodial balances.

``hold`` moves the price from the buyer's available to the buyer's held
balance under the key ``order:<id>:hold``. The three outcomes (release,
refund, split) share the one key ``order:<id>:outcome``: repeating the same
outcome returns the first posting, and a different outcome for the same order
is a Conflict, so an order has at most one outcome (I2, I3). The order's hold
posting is the record of who holds how much; outcomes read it rather than
trusting the caller's amounts (I1, I13: the fee comes out of the price, never
on top of it).

Call these inside the order flow's own write session, so the order's state
change and its money move commit together.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..errors import ValidationFailed
from . import ledger
from .ledger import FEES, Posted, user_account


def _hold_key(order_id: int) -> str:
    return f"order:{order_id}:hold"


def _outcome_key(order_id: int) -> str:
    return f"order:{order_id}:outcome"


def hold(session: Session, order_id: int, buyer_id: int, amount_sats: int) -> Posted:
    """Escrow the price: buyer available -> buyer held. InsufficientFunds if the buyer lacks it."""
    if amount_sats <= 0:
        raise ValidationFailed(f"hold amount must be positive, got {amount_sats}", field="amount_sats")
    return ledger.transfer(session, _hold_key(order_id), "escrow_hold",
                           [(user_account(buyer_id, "available"), -amount_sats),
                            (user_account(buyer_id, "held"), amount_sats)],
                           memo=f"order {order_id}")


def held(session: Session, order_id: int) -> tuple[int, int]:
    """(buyer id, amount) escrowed for the order; ValidationFailed if nothing is held."""
    posted = ledger.find(session, _hold_key(order_id))
    if posted is None:
        raise ValidationFailed(f"order {order_id} has no custodial hold", field="order_id")
    (name, amount), = [(n, a) for n, a in posted.legs if n.endswith(":held")]
    return int(name.split(":")[1]), amount


def release(session: Session, order_id: int, seller_id: int, amount_sats: int, fee_sats: int) -> Posted:
    """Pay the seller: the whole hold leaves the buyer's held; seller gets amount - fee, fees get fee."""
    buyer_id, amount = held(session, order_id)
    if amount_sats != amount:
        raise ValidationFailed(f"order {order_id} holds {amount} sats, not {amount_sats}", field="amount_sats")
    return split(session, order_id, buyer_id, 0, seller_id, amount_sats, fee_sats)


def refund(session: Session, order_id: int, buyer_id: int) -> Posted:
    """Return the whole hold to the buyer's available balance."""
    holder, amount = held(session, order_id)
    if holder != buyer_id:
        raise ValidationFailed(f"order {order_id}'s hold belongs to user {holder}, not {buyer_id}",
                               field="buyer_id")
    return split(session, order_id, buyer_id, amount, None, 0, 0)


def split(session: Session, order_id: int, buyer_id: int, buyer_sats: int, seller_id: int | None,
          seller_gross_sats: int, fee_sats: int) -> Posted:
    """An arbiter's split: buyer_sats back to the buyer, seller_gross_sats - fee_sats to the seller,
    fee_sats to fees. The parts must add up to the hold exactly."""
    holder, amount = held(session, order_id)
    if holder != buyer_id:
        raise ValidationFailed(f"order {order_id}'s hold belongs to user {holder}, not {buyer_id}",
                               field="buyer_id")
    if min(buyer_sats, seller_gross_sats, fee_sats) < 0 or fee_sats > seller_gross_sats:
        raise ValidationFailed("parts must be non-negative and the fee at most the seller's part",
                               field="fee_sats")
    if buyer_sats + seller_gross_sats != amount:
        raise ValidationFailed(f"parts add up to {buyer_sats + seller_gross_sats}, the hold is {amount}",
                               field="amount_sats")
    if seller_gross_sats and seller_id is None:
        raise ValidationFailed("a seller part needs a seller", field="seller_id")
    legs = [(user_account(buyer_id, "held"), -amount)]
    if buyer_sats:
        legs.append((user_account(buyer_id, "available"), buyer_sats))
    if seller_gross_sats - fee_sats:
        legs.append((user_account(seller_id, "available"), seller_gross_sats - fee_sats))
    if fee_sats:
        legs.append((FEES, fee_sats))
    kind = "escrow_refund" if buyer_sats == amount else "escrow_release" if buyer_sats == 0 else "escrow_split"
    return ledger.transfer(session, _outcome_key(order_id), kind, legs, memo=f"order {order_id}")
