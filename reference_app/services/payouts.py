"""Outgoing payments from the hub, at most once per order and beneficiary (I3, I10, I13).

The protocol for each attempt:
1. If a payment hash was recorded, ask the hub (TrackPayment) first: a
   succeeded or in-flight payment is never sent again.
2. Otherwise get an invoice (from the user's bound node, or one they
   submitted), check its amount, destination, expiry and final CLTV (I10),
   and record it with a compare-and-swap on the payout row: the marker
   commits before the payment is sent, so a crash cannot lose track of it.
3. Send with a fee limit paid from the marketplace's fee, never from the
   escrowed amount (I13). Sending does not wait: the payment runs on the hub
   client's loop and its outcome is recorded when it ends. A payee that holds
   the payment (a hold invoice it never settles) or a route that never resolves
   ties up no worker and delays no one else's release, refund or split.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Callable, NamedTuple

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from regtest_cluster.nodes.lnd import LndError

from ..context import AppContext
from ..ln import user_node_client
from ..store.db import Prepared, PreparedUpdate
from ..store.models import Order, Payout, User
from . import faults
from .errors import NodeUnavailable, ValidationFailed
from .faults import planted
from .holds import node_call
from .lifecycle import S
from .orders import PPM, fee_for
from .records import OrderRecord
from .transitions import now


# Payments this process has sent and not yet seen end live in ctx.payouts_in_flight
# (payout id -> order id); this lock guards every app context's.
_inflight_lock = threading.Lock()


def in_flight_here(ctx: AppContext, order_id: int) -> bool:
    """Whether one of the order's payouts is a payment this process is still waiting on."""
    with _inflight_lock:
        return order_id in ctx.payouts_in_flight.values()


def plan(settings, order: OrderRecord) -> list[tuple[str, int, int]]:
    """(beneficiary, user id, sats) for the order's pending outcome."""
    state = S(order.state)
    if state == S.RELEASE_PENDING:
        budget = settings.payout_fee_limit_sats if planted(settings, "fee_from_escrow") else 0
        return [("seller", order.seller_id, order.price_sats - order.fee_sats - budget)]
    if state == S.REFUND_PENDING:
        return [("buyer", order.buyer_id, order.price_sats)]
    if state == S.SPLIT_PENDING:
        buyer_part = order.price_sats * (order.buyer_share_ppm or 0) // PPM
        seller_gross = order.price_sats - buyer_part
        return [("buyer", order.buyer_id, buyer_part),
                ("seller", order.seller_id, seller_gross - fee_for(settings, seller_gross))]
    return []


# An order's payouts (its id, beneficiary and status), read on each of the worker's passes over it,
# and a new one (an ORM insert and its flush were 2.4 % of the app's CPU in bench escrow, py-spy).
_PAYOUTS = Payout.__table__
_OF_ORDER = Prepared(select(Payout.beneficiary, Payout.id, Payout.status)
                     .where(Payout.order_id == bindparam("order_id")))
_MAKE = Prepared(insert(_PAYOUTS).returning(Payout.id))
_FEE = Prepared(select(Order.fee_sats).where(Order.id == bindparam("order_id")))
# The marker, a compare-and-swap on the attempt read: a hand-in meanwhile replaced the invoice
# read (``known_request``), so that one is paid next time. Prepared: the ORM's UPDATE, with its
# evaluation of the WHERE against loaded objects, was a tenth of a payout attempt's CPU.
_MARK = PreparedUpdate(
    update(_PAYOUTS)
    .where(_PAYOUTS.c.id == bindparam("id", type_=_PAYOUTS.c.id.type),
           _PAYOUTS.c.attempts == bindparam("attempts", type_=_PAYOUTS.c.attempts.type),
           or_(_PAYOUTS.c.status == "PENDING", _PAYOUTS.c.status == "FAILED"),
           _PAYOUTS.c.payment_request.is_not_distinct_from(
               bindparam("known_request", type_=_PAYOUTS.c.payment_request.type)))
    .values(status="IN_FLIGHT", attempts=bindparam("new_attempts", type_=_PAYOUTS.c.attempts.type),
            payment_request=bindparam("new_request", type_=_PAYOUTS.c.payment_request.type),
            payment_hash=bindparam("new_hash", type_=_PAYOUTS.c.payment_hash.type), last_error=None))
# Every payout's end: one UPDATE, no row loaded into the ORM; never over a SUCCEEDED one.
_SUCCEEDED = PreparedUpdate(
    update(_PAYOUTS).where(_PAYOUTS.c.id == bindparam("id", type_=_PAYOUTS.c.id.type),
                           _PAYOUTS.c.status != "SUCCEEDED")
    .values(status="SUCCEEDED", fee_sats=bindparam("fee", type_=_PAYOUTS.c.fee_sats.type), last_error=None))


def ensure(ctx: AppContext, order: OrderRecord) -> list[tuple[int, str]]:
    """Create the order's payout rows once; return their ids and statuses. Reads first: the rows
    exist on every pass but the first, and a write would queue behind SQLite's one writer."""
    wanted = plan(ctx.settings, order)
    found = _found(_OF_ORDER.read(ctx.db, {"order_id": order.id}))
    if all(b in found for b, _u, _a in wanted):
        return [found[b] for b, _u, _a in wanted]
    with ctx.db.session() as session:  # read again in the write: a hand-in may have made one meanwhile
        found = _payouts_of(session, order.id)
        for beneficiary, user_id, amount in wanted:
            if beneficiary not in found:
                (pid,), = _MAKE.rows(session, {"order_id": order.id, "beneficiary": beneficiary, "user_id": user_id,
                                               "amount_sats": amount, "payment_request": None, "payment_hash": None,
                                               "last_error": None, "next_attempt_at": None})
                found[beneficiary] = (pid, "PENDING")
    return [found[b] for b, _u, _a in wanted]


def _payouts_of(session: Session, order_id: int) -> dict[str, tuple[int, str]]:
    """The order's payouts: beneficiary -> (id, status)."""
    return _found(_OF_ORDER.rows(session, {"order_id": order_id}))


def _found(rows) -> dict[str, tuple[int, str]]:
    return {beneficiary: (pid, status) for beneficiary, pid, status in rows}


def validate_invoice(ctx: AppContext, request: str, amount: int, user: User | Payee) -> dict:
    """The payout invoice checks (I10); raises ValidationFailed naming what is wrong."""
    try:
        decoded = node_call(ctx.hub.decodepayreq, request)
    except LndError as exc:
        raise ValidationFailed(f"not a valid invoice: {exc.message}", field="payment_request") from None
    got = int(decoded.get("num_satoshis", 0) or 0)
    if got != amount and not planted(ctx.settings, "trust_payout_invoice"):
        raise ValidationFailed(f"invoice is for {got} sats; the payout is exactly {amount}", field="payment_request")
    remaining = int(decoded["timestamp"]) + int(decoded["expiry"]) - time.time()
    if remaining < ctx.settings.payout_min_expiry_s and not planted(ctx.settings, "payout_expiry_unchecked"):
        raise ValidationFailed(f"invoice expires in {int(remaining)}s; at least "
                               f"{ctx.settings.payout_min_expiry_s}s is needed", field="payment_request")
    if int(decoded.get("cltv_expiry", 0)) > ctx.settings.payout_max_final_cltv:
        raise ValidationFailed(f"invoice final CLTV {decoded['cltv_expiry']} exceeds "
                               f"{ctx.settings.payout_max_final_cltv}", field="payment_request")
    if user.node_pubkey and decoded["destination"] != user.node_pubkey:
        raise ValidationFailed("invoice is not payable to your bound node", field="payment_request")
    return decoded


def _fetch_invoice(ctx: AppContext, user: User | Payee, amount: int, order_id: int) -> str | None:
    if not (user.payout_rest_url and user.payout_macaroon_enc and user.payout_tls_cert_enc):
        return None
    return node_call(_user_node(ctx, user).addinvoice, amount, f"escrowlab payout order {order_id}",
                     3600)["payment_request"]


def _user_node(ctx: AppContext, user: User | Payee):
    """The client of a user's bound node, kept while the binding stays the same (a new client
    costs two decryptions, a certificate parse and a TLS handshake per payout)."""
    key = (user.id, user.payout_rest_url, user.payout_macaroon_enc, user.payout_tls_cert_enc)
    with _inflight_lock:
        client = ctx.user_nodes.get(user.id)
        if client is not None and client[0] == key:
            return client[1]
    fresh = user_node_client(f"user-{user.id}", user.payout_rest_url, ctx.box.open(user.payout_macaroon_enc).decode(),
                             ctx.box.open(user.payout_tls_cert_enc).decode())
    with _inflight_lock:
        old = ctx.user_nodes.get(user.id)
        ctx.user_nodes[user.id] = (key, fresh)
    if old is not None:
        old[1].close()
    return fresh


def _track(ctx: AppContext, payment_hash: str) -> dict | None:
    try:
        return node_call(ctx.hub.track_payment, bytes.fromhex(payment_hash))
    except LndError as exc:
        if "not found" in exc.message or "isn't initiated" in exc.message:
            return None
        raise


def _finish(ctx: AppContext, payout_id: int, result: dict) -> str:
    status = result.get("status", "UNKNOWN")
    if status == "SUCCEEDED":
        with ctx.db.session() as session:
            _SUCCEEDED.run(session, {"id": payout_id, "fee": int(result.get("fee_sat", 0) or 0)})
        return "SUCCEEDED"
    with ctx.db.session() as session:
        p = session.get(Payout, payout_id)
        if p.status == "SUCCEEDED":  # never downgraded: another process may have recorded the end first
            return p.status
        if status == "FAILED":
            p.status, p.last_error = "FAILED", result.get("failure_reason", "FAILED")
            delay = ctx.settings.payout_retry_base_s * 2 ** min(p.attempts, 6)
            p.next_attempt_at = now() + timedelta(seconds=delay)
        else:
            p.status = "IN_FLIGHT"
        return p.status


class Payee(NamedTuple):
    """What a payout attempt needs of the user it pays: their bound node, if any."""
    id: int
    payout_rest_url: str | None
    payout_macaroon_enc: bytes | None
    payout_tls_cert_enc: bytes | None
    node_pubkey: str | None


# A payout attempt's one read: the payout and its payee.
_ATTEMPT = Prepared(
    select(Payout.status, Payout.payment_hash, Payout.payment_request, Payout.attempts, Payout.amount_sats,
           Payout.order_id, Payout.beneficiary, Payout.next_attempt_at, *(User.__table__.c[k] for k in Payee._fields))
    .join(User, User.id == Payout.user_id).where(Payout.id == bindparam("id")))


def attempt(ctx: AppContext, payout_id: int, order_fee: int | None = None,
            on_success: Callable[[], None] | None = None) -> str:
    """One step of the protocol; returns the payout's status afterwards. ``order_fee`` is the
    order's fee (a seller's payout routes on at most that), if the caller has read the order.
    ``on_success`` is called if a payment sent here ends SUCCEEDED, once that is recorded (on the
    hub client's callback thread), instead of waking the worker."""
    with _inflight_lock:
        if payout_id in ctx.payouts_in_flight:  # sent from here; its end is recorded when it comes
            return "IN_FLIGHT"
    if planted(ctx.settings, "double_payout"):
        with ctx.db.session() as session:
            p = session.get(Payout, payout_id)
            if p.status == "SUCCEEDED" and p.attempts == 1:
                p.status, p.payment_hash, p.payment_request = "FAILED", None, None  # forget it was paid
                return "FAILED"
    # a read by itself: the claim below is its own compare-and-swap
    (status, known_hash, known_request, attempts, amount, order_id, beneficiary, next_attempt_at,
     *payee), = _ATTEMPT.read(ctx.db, {"id": payout_id})
    if status == "SUCCEEDED":
        return status
    if next_attempt_at and next_attempt_at > now():
        return status
    fee_limit = ctx.settings.payout_fee_limit_sats
    if beneficiary == "seller":
        if order_fee is None:
            order_fee, = _FEE.read(ctx.db, {"order_id": order_id})[0]
        fee_limit = min(fee_limit, order_fee)
    user = Payee(*payee)

    if known_hash:
        tracked = _track(ctx, known_hash)
        if tracked is not None and tracked.get("status") in ("SUCCEEDED", "IN_FLIGHT"):
            return _finish(ctx, payout_id, tracked)
        if tracked is None and status == "IN_FLIGHT":
            # The marker committed but the payment never reached the node (a crash in
            # between): send that same invoice again; lnd pays a hash at most once.
            return _send(ctx, payout_id, order_id, known_request, known_hash, fee_limit, on_success)
        if status == "IN_FLIGHT":
            status = _finish(ctx, payout_id, tracked)  # FAILED: a new attempt is safe

    manual = known_request if status == "PENDING" else None
    try:
        request = manual or _fetch_invoice(ctx, user, amount, order_id)
        if request is None:
            return _note(ctx, payout_id, "no payout method: bind a node (PUT /me/payout-node) "
                                          "or submit an invoice (POST /orders/{id}/payout-invoice)")
        decoded = validate_invoice(ctx, request, amount, user)
    except (NodeUnavailable, ValidationFailed) as exc:
        return _note(ctx, payout_id, exc.message, backoff=True)

    with ctx.db.session() as session:  # the marker: claimed before anything is sent
        claimed = _MARK.run(session, {"id": payout_id, "attempts": attempts, "known_request": known_request,
                                      "new_attempts": attempts + 1, "new_request": request,
                                      "new_hash": decoded["payment_hash"]})
        if claimed != 1:
            return "IN_FLIGHT"  # another worker claimed this attempt
    faults.point("after_payout_marker", ctx.settings.fault_points)
    return _send(ctx, payout_id, order_id, request, decoded["payment_hash"], fee_limit, on_success)


def _send(ctx: AppContext, payout_id: int, order_id: int, request: str, payment_hash: str, fee_limit: int,
          on_success: Callable[[], None] | None = None) -> str:
    """Start the payment and return at once; its outcome is recorded when the node ends it. Then
    ``on_success`` carries its order on if it SUCCEEDED, or else the worker is woken: an end
    waits for the worker no longer than a tick."""
    with _inflight_lock:
        if payout_id in ctx.payouts_in_flight:
            return "IN_FLIGHT"
        ctx.payouts_in_flight[payout_id] = order_id

    def ended(outcome: dict | Exception) -> None:
        status = None
        try:
            status = _ended(ctx, payout_id, payment_hash, outcome)
        finally:
            with _inflight_lock:
                ctx.payouts_in_flight.pop(payout_id, None)
            (on_success if status == "SUCCEEDED" and on_success else ctx.wake_worker)()

    ctx.hub.pay(request, timeout_s=ctx.settings.payout_timeout_s, fee_limit_sats=fee_limit, on_done=ended)
    return "IN_FLIGHT"


def _ended(ctx: AppContext, payout_id: int, payment_hash: str, outcome: dict | Exception) -> str:
    if isinstance(outcome, LndError):
        if outcome.status == 0 or outcome.status >= 502:  # unreachable: left IN_FLIGHT; the next attempt tracks it
            return _note(ctx, payout_id, f"the Lightning node is unreachable: {outcome.message}", backoff=True)
        if "already paid" in outcome.message or "in transition" in outcome.message:
            return _finish(ctx, payout_id, _track(ctx, payment_hash) or {"status": "IN_FLIGHT"})
        outcome = {"status": "FAILED", "failure_reason": outcome.message}
    elif isinstance(outcome, Exception):
        raise outcome
    faults.point("after_payout_sent", ctx.settings.fault_points)
    return _finish(ctx, payout_id, outcome)


def _note(ctx: AppContext, payout_id: int, message: str, backoff: bool = False) -> str:
    with ctx.db.session() as session:
        p = session.get(Payout, payout_id)
        p.last_error = message
        if backoff:
            p.next_attempt_at = now() + timedelta(seconds=ctx.settings.payout_retry_base_s * 2 ** min(p.attempts, 6))
        return p.status
