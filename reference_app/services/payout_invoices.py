"""A payee hands in the invoice its payout should pay (POST /orders/{id}/payout-invoice).

The payout row is the at-most-once marker that ``payouts.attempt`` claims before it sends.
A hand-in may only change the invoice while no payment has started:
- while a payment is in flight, a second invoice is refused (409 ``payout_in_flight``),
  naming the invoice that is being paid; the payee may hand in another only if that fails;
- once the payout has succeeded, every hand-in is refused (409 ``payout_already_paid``);
- before any payment starts, a new invoice replaces an earlier one, and the answer says
  which one it replaced, so the payee knows which invoice will be paid.

The change is a compare-and-swap on the row, and ``attempt``'s claim checks the invoice it
read, so a hand-in and a worker that meet cannot both win: either the hand-in's invoice
is the one paid, or the hand-in is told which one is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..context import AppContext
from ..store.models import Payout, User
from . import payouts
from .errors import Conflict, ValidationFailed
from .records import OrderRecord


class PayoutInFlight(Conflict):
    """A payment of this payout has started: no other invoice can be handed in unless it fails."""
    code = "payout_in_flight"


class PayoutAlreadyPaid(Conflict):
    """The payout succeeded: there is nothing left to pay."""
    code = "payout_already_paid"


@dataclass(frozen=True)
class HandIn:
    beneficiary: str
    payment_request: str   # the invoice the payout will pay
    payment_hash: str
    replaced: str | None   # the earlier invoice, never paid, that this one replaced


def _refuse_if_started(order: OrderRecord, p: Payout) -> None:
    if p.status == "IN_FLIGHT":
        raise PayoutInFlight(
            f"the {p.beneficiary} payout of order {order.id} is in flight, paying invoice {p.payment_hash}; "
            "that invoice is the one paid (hand in another only if this payment fails)",
            beneficiary=p.beneficiary, payout_status=p.status, payment_request=p.payment_request,
            payment_hash=p.payment_hash)
    if p.status == "SUCCEEDED":
        raise PayoutAlreadyPaid(
            f"the {p.beneficiary} payout of order {order.id} was paid, to invoice {p.payment_hash}",
            beneficiary=p.beneficiary, payout_status=p.status, payment_request=p.payment_request,
            payment_hash=p.payment_hash)


def hand_in(ctx: AppContext, session: Session, order: OrderRecord, user: User, beneficiary: str,
            request: str) -> HandIn:
    """Record ``request`` as the invoice the ``beneficiary``'s payout pays, or refuse, saying why."""
    p = session.scalar(select(Payout).where(Payout.order_id == order.id, Payout.beneficiary == beneficiary))
    if p is not None:
        _refuse_if_started(order, p)  # before asking the hub anything, and after the order ended too
    amounts = {b: a for b, _u, a in payouts.plan(ctx.settings, order)}
    if beneficiary not in amounts:
        raise ValidationFailed(f"order {order.id} owes no payout to its {beneficiary} now", field="payment_request")
    decoded = payouts.validate_invoice(ctx, request, amounts[beneficiary], user)
    if p is None:
        try:
            with session.begin_nested():  # a savepoint: PostgreSQL aborts the whole transaction otherwise
                session.add(Payout(order_id=order.id, beneficiary=beneficiary, user_id=user.id,
                                   amount_sats=amounts[beneficiary], payment_request=request, status="PENDING"))
            return HandIn(beneficiary, request, decoded["payment_hash"], None)
        except IntegrityError:  # the worker made the row meanwhile: hand in over it, as below
            p = session.scalar(select(Payout).where(Payout.order_id == order.id, Payout.beneficiary == beneficiary))
            _refuse_if_started(order, p)
    earlier, attempts = p.payment_request, p.attempts
    changed = session.execute(
        update(Payout).where(Payout.id == p.id, Payout.status.in_(("PENDING", "FAILED")), Payout.attempts == attempts,
                             Payout.payment_request.is_not_distinct_from(earlier))
        .values(payment_request=request, payment_hash=None, status="PENDING", next_attempt_at=None)
        .execution_options(synchronize_session=False))
    session.expire(p)
    if changed.rowcount != 1:  # a payment started meanwhile, or another hand-in landed first
        _refuse_if_started(order, p)
        raise Conflict(f"the {beneficiary} payout of order {order.id} changed meanwhile; hand the invoice in again",
                       beneficiary=beneficiary, payout_status=p.status)
    return HandIn(beneficiary, request, decoded["payment_hash"], earlier if earlier not in (None, request) else None)
