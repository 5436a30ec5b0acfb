"""Lightning withdrawals through the hub (LNDHub-style accounts).

A withdrawal follows reserve -> pay -> settle (I5, I14):
1. decode the invoice on the hub and refuse zero-amount, sub-satoshi and
   expired ones;
2. reserve amount + fee reserve (available -> inflight) under the key
   ``ln_out:<hash>:reserve`` and record the withdrawal row, and commit, before
   anything is sent. The key is the payment hash, not the payer: a second
   account paying the same invoice gets Conflict (F32-F35);
   Before that, the hub is asked whether it ever paid this hash: an invoice
   already paid by another part of the marketplace (an escrow payout) is
   refused rather than charged to the user (F34);
3. pay with ``fee_limit`` equal to the fee reserve, so a route can never cost
   more than was reserved (F29, F30);
4. change balances only on a final status: SUCCEEDED debits amount + actual
   fee (rounded up to the sat) and returns the unused reserve; FAILED returns
   all of it. While the node says IN_FLIGHT, or cannot be asked, the
   reservation stays, across restarts: ``resume_withdrawals`` re-asks the hub.

An invoice issued by the hub itself cannot be paid over Lightning (lnd refuses
self-payments), and paying it must not create money (F31). If it is a
custodial deposit invoice, it is paid inside the ledger: the invoice is
claimed, cancelled on the node so nobody can also pay it from outside, and the
amount moves from payer to payee; paying one's own invoice nets to zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select, update

from regtest_cluster.nodes.lnd import LndError

from ...context import AppContext
from ...polling import poll_until
from ...store.models_ledger import LnDepositInvoice, LnWithdrawal
from .. import faults
from ..errors import Conflict, NodeUnavailable, ValidationFailed
from ..holds import node_call
from . import ledger
from .ledger import FEES, HUB_LN, user_account
from .ln_deposits import credit_ln_deposit, lookup

DEFAULT_FEE_RESERVE_PPM = 10_000   # 1 %, LndHub's forward reserve
DEFAULT_FEE_RESERVE_MIN_SATS = 10
FINAL = ("SUCCEEDED", "FAILED")
NOT_INITIATED = ("isn't initiated", "not found")


@dataclass(frozen=True)
class WithdrawalView:
    payment_hash: str
    user_id: int
    status: str
    amount_sats: int
    fee_limit_sats: int
    fee_sats: int
    internal: bool
    last_error: str | None


def fee_reserve(amount_sats: int, ppm: int = DEFAULT_FEE_RESERVE_PPM,
                min_sats: int = DEFAULT_FEE_RESERVE_MIN_SATS) -> int:
    return max(min_sats, -(-amount_sats * ppm // 1_000_000))


def _msat_to_sats_up(msat: int) -> int:
    return -(-msat // 1000)


def _view(row: LnWithdrawal) -> WithdrawalView:
    return WithdrawalView(row.payment_hash, row.user_id, row.status, row.amount_sats, row.fee_limit_sats,
                          row.fee_sats, row.internal, row.last_error)


def ln_withdraw(ctx: AppContext, user_id: int, payment_request: str, *,
                fee_reserve_ppm: int = DEFAULT_FEE_RESERVE_PPM,
                fee_reserve_min_sats: int = DEFAULT_FEE_RESERVE_MIN_SATS,
                wait_s: float = 30.0, payment_timeout_s: int = 60) -> WithdrawalView:
    """Pay an invoice from the user's available balance; returns the withdrawal's state.

    Waits up to ``wait_s`` for a final status; a hold invoice or a slow route leaves it
    IN_FLIGHT with the funds still reserved. Repeating the call for the same invoice
    and user returns the same withdrawal; another user gets Conflict.
    """
    decoded = _decode(ctx, payment_request)
    payment_hash = decoded["payment_hash"]
    amount = int(decoded["num_msat"]) // 1000
    internal = decoded["destination"] == node_call(ctx.hub.getinfo)["identity_pubkey"]
    with ctx.db.session(write=False) as s:
        existing = s.scalar(select(LnWithdrawal).where(LnWithdrawal.payment_hash == payment_hash))
    if existing is not None:
        if existing.user_id != user_id:
            raise Conflict("this invoice is already being paid from another account", payment_hash=payment_hash)
        return _view(existing) if existing.status in FINAL else _advance(ctx, payment_hash, wait_s,
                                                                         payment_timeout_s)
    if internal:
        return _pay_internal(ctx, user_id, payment_request, payment_hash, amount)
    prior = _track(ctx, payment_hash)
    if prior is not None and prior.get("status") in ("SUCCEEDED", "IN_FLIGHT"):
        raise ValidationFailed("the hub has already paid this invoice", field="payment_request")
    fee_limit = fee_reserve(amount, fee_reserve_ppm, fee_reserve_min_sats)
    debit_after_send = faults.planted(ctx.settings, "custodial_debit_after_send")
    if debit_after_send:  # the node pays before the ledger's floor is asked: a refused debit comes too late
        _send(ctx, payment_hash, payment_request, fee_limit, payment_timeout_s)
    _reserve(ctx, user_id, payment_request, payment_hash, amount, fee_limit, internal=False)
    faults.point("after_ln_withdraw_reserve", ctx.settings.fault_points)  # debited, not sent: resume sends
    if not debit_after_send:
        _send(ctx, payment_hash, payment_request, fee_limit, payment_timeout_s)
    return _advance(ctx, payment_hash, wait_s, payment_timeout_s)


def _decode(ctx: AppContext, payment_request: str) -> dict:
    try:
        decoded = node_call(ctx.hub.decodepayreq, payment_request)
    except LndError as exc:
        raise ValidationFailed(f"not a valid invoice: {exc.message}", field="payment_request") from None
    msat = int(decoded.get("num_msat", 0) or 0)
    if msat <= 0:
        raise ValidationFailed("zero-amount invoices are not accepted: ask for an invoice with an amount",
                               field="payment_request")
    if msat % 1000:
        raise ValidationFailed(f"invoice amount {msat} msat is not a whole number of sats", field="payment_request")
    if int(decoded["timestamp"]) + int(decoded["expiry"]) <= time.time():
        raise ValidationFailed("invoice has expired", field="payment_request")
    return decoded


def _reserve(ctx: AppContext, user_id: int, payment_request: str, payment_hash: str, amount: int,
             fee_limit: int, internal: bool) -> None:
    with ctx.db.session() as s:
        _reserve_in(s, user_id, payment_request, payment_hash, amount, fee_limit, internal)


def _reserve_in(s, user_id: int, payment_request: str, payment_hash: str, amount: int,
                fee_limit: int, internal: bool) -> None:
    posted = ledger.transfer(s, f"ln_out:{payment_hash}:reserve", "ln_withdraw_reserve",
                             [(user_account(user_id, "available"), -(amount + fee_limit)),
                              (user_account(user_id, "inflight"), amount + fee_limit)])
    if not posted.replayed:
        s.add(LnWithdrawal(payment_hash=payment_hash, user_id=user_id, payment_request=payment_request,
                           amount_sats=amount, fee_limit_sats=fee_limit, internal=internal, status="RESERVED"))


def _track(ctx: AppContext, payment_hash: str) -> dict | None:
    """The hub's payment for this hash, or None if it never started one."""
    try:
        return node_call(ctx.hub.track_payment, bytes.fromhex(payment_hash))
    except LndError as exc:
        if any(m in exc.message for m in NOT_INITIATED):
            return None
        raise


def _send(ctx: AppContext, payment_hash: str, payment_request: str, fee_limit: int, timeout_s: int) -> None:
    """Start the payment. Any doubt leaves the row as it is for ``_advance`` to resolve."""
    try:
        node_call(ctx.hub.send_payment, payment_request, timeout_s=timeout_s, fee_limit_sats=fee_limit, wait=False)
        faults.point("after_ln_withdraw_sent", ctx.settings.fault_points)  # sent, not final: resume tracks it
    except NodeUnavailable as exc:
        _note(ctx, payment_hash, exc.message)
    except LndError as exc:
        if _track(ctx, payment_hash) is None:  # refused before any HTLC left (expired, no route...)
            _finish(ctx, payment_hash, {"status": "FAILED", "failure_reason": exc.message})
        else:
            _note(ctx, payment_hash, exc.message)


def _advance(ctx: AppContext, payment_hash: str, wait_s: float, timeout_s: int) -> WithdrawalView:
    """Ask the hub until the payment is final or ``wait_s`` passes; apply what it says."""
    with ctx.db.session(write=False) as s:
        row = s.scalar(select(LnWithdrawal).where(LnWithdrawal.payment_hash == payment_hash))
        if row.status in FINAL:
            return _view(row)
        if row.internal:
            return _finish_internal(ctx, payment_hash)
        request, fee_limit, status = row.payment_request, row.fee_limit_sats, row.status

    def final() -> dict | None:
        tracked = _track(ctx, payment_hash)
        return tracked if tracked and tracked.get("status") in FINAL else None

    try:
        tracked = _track(ctx, payment_hash)
        if tracked is None:
            # Reserved but the hub never started it (a crash or an outage between
            # reserve and send): send it now; lnd pays one hash at most once.
            _send(ctx, payment_hash, request, fee_limit, timeout_s)
            tracked = _track(ctx, payment_hash)
        if tracked is not None and tracked.get("status") not in FINAL and wait_s > 0:
            tracked = poll_until(final, timeout_s=wait_s) or tracked
    except NodeUnavailable as exc:
        _note(ctx, payment_hash, exc.message)
        tracked = None
    return _finish(ctx, payment_hash, tracked) if tracked else _current(ctx, payment_hash)


def _current(ctx: AppContext, payment_hash: str) -> WithdrawalView:
    with ctx.db.session(write=False) as s:
        return _view(s.scalar(select(LnWithdrawal).where(LnWithdrawal.payment_hash == payment_hash)))


def _note(ctx: AppContext, payment_hash: str, message: str) -> None:
    with ctx.db.session() as s:
        s.execute(update(LnWithdrawal).where(LnWithdrawal.payment_hash == payment_hash)
                  .values(last_error=message))


def _finish(ctx: AppContext, payment_hash: str, tracked: dict) -> WithdrawalView:
    """Apply one node answer. Only SUCCEEDED and FAILED move money; the status CAS makes
    the settlement happen once even if two resumers race."""
    status = tracked.get("status")
    with ctx.db.session() as s:
        row = s.scalar(select(LnWithdrawal).where(LnWithdrawal.payment_hash == payment_hash))
        if row.status in FINAL:
            return _view(row)
        if status not in FINAL:
            row.status = "IN_FLIGHT"
            return _view(row)
        reserved = row.amount_sats + row.fee_limit_sats
        inflight, available = user_account(row.user_id, "inflight"), user_account(row.user_id, "available")
        if status == "SUCCEEDED":
            fee = _msat_to_sats_up(int(tracked.get("fee_msat", 0) or 0))
            user_fee = min(fee, row.fee_limit_sats)
            legs = [(inflight, -reserved), (available, row.fee_limit_sats - user_fee),
                    (HUB_LN, row.amount_sats + fee)]
            if fee > user_fee:  # lnd enforces fee_limit; should it not, the marketplace pays, not the user
                legs.append((FEES, -(fee - user_fee)))
            ledger.transfer(s, f"ln_out:{payment_hash}:settle", "ln_withdraw_settle", legs)
            row.fee_sats, row.last_error = fee, None
        else:
            ledger.transfer(s, f"ln_out:{payment_hash}:release", "ln_withdraw_release",
                            [(inflight, -reserved), (available, reserved)])
            row.last_error = tracked.get("failure_reason") or "FAILED"
        row.status = status
        return _view(row)


def resume_withdrawals(ctx: AppContext, wait_s: float = 0.0, payment_timeout_s: int = 60) -> list[WithdrawalView]:
    """Re-ask the hub about every withdrawal without a final status (after a restart,
    periodically from the worker). Reservations stay until the hub says SUCCEEDED or FAILED."""
    with ctx.db.session(write=False) as s:
        hashes = s.scalars(select(LnWithdrawal.payment_hash)
                           .where(LnWithdrawal.status.in_(("RESERVED", "IN_FLIGHT")))
                           .order_by(LnWithdrawal.id)).all()
    return [_advance(ctx, h, wait_s, payment_timeout_s) for h in hashes]


def withdrawal(ctx: AppContext, payment_hash: str) -> WithdrawalView:
    return _current(ctx, payment_hash)


# --- payments to the hub's own custodial invoices

def _pay_internal(ctx: AppContext, user_id: int, payment_request: str, payment_hash: str,
                  amount: int) -> WithdrawalView:
    # The claim and the reservation commit together: a payer short of funds leaves the
    # invoice OPEN, and a crash cannot leave it claimed with nobody paying it.
    with ctx.db.session() as s:
        claimed = s.execute(update(LnDepositInvoice)
                            .where(LnDepositInvoice.payment_hash == payment_hash, LnDepositInvoice.state == "OPEN")
                            .values(state="CLAIMED"))
        if claimed.rowcount != 1:
            state = s.scalar(select(LnDepositInvoice.state).where(LnDepositInvoice.payment_hash == payment_hash))
            if state is None:
                raise ValidationFailed("this invoice is the marketplace's own and belongs to no custodial "
                                       "account", field="payment_request")
            raise ValidationFailed(f"this invoice can no longer be paid ({state})", field="payment_request")
        _reserve_in(s, user_id, payment_request, payment_hash, amount, 0, internal=True)
    return _finish_internal(ctx, payment_hash)


def _finish_internal(ctx: AppContext, payment_hash: str) -> WithdrawalView:
    """Cancel the invoice on the hub, then move the money inside the ledger. If the
    invoice was settled from outside first, the payee is credited as a deposit and the
    payer's reservation is returned."""
    try:
        node_call(ctx.hub.cancel_invoice, bytes.fromhex(payment_hash))
        outcome = "PAID_INTERNAL"
    except LndError as exc:
        if "unable to locate invoice" in exc.message:
            outcome = "PAID_INTERNAL"  # gone from the node: nobody can pay it any more
        elif lookup(ctx, payment_hash).get("state") == "SETTLED":
            outcome = "SETTLED"
        else:
            raise
    with ctx.db.session() as s:
        row = s.scalar(select(LnWithdrawal).where(LnWithdrawal.payment_hash == payment_hash))
        invoice = s.scalar(select(LnDepositInvoice).where(LnDepositInvoice.payment_hash == payment_hash))
        if row.status in FINAL:
            return _view(row)
        payer_inflight = user_account(row.user_id, "inflight")
        if outcome == "PAID_INTERNAL":
            ledger.transfer(s, f"ln_out:{payment_hash}:settle", "ln_internal_settle",
                            [(payer_inflight, -row.amount_sats),
                             (user_account(invoice.user_id, "available"), row.amount_sats)])
            invoice.state, invoice.credited_sats, row.status = "PAID_INTERNAL", row.amount_sats, "SUCCEEDED"
        else:
            ledger.transfer(s, f"ln_out:{payment_hash}:release", "ln_withdraw_release",
                            [(payer_inflight, -row.amount_sats),
                             (user_account(row.user_id, "available"), row.amount_sats)])
            row.status, row.last_error = "FAILED", "the invoice was paid from outside first"
            invoice.state = "OPEN"  # so the deposit credit below applies
    if outcome == "SETTLED":
        credit_ln_deposit(ctx, payment_hash)
    return _current(ctx, payment_hash)
