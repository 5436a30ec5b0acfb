"""ln_hold: the buyer's payment is held by the hub's LND in a hold invoice.

Funding is LND's ACCEPTED (seen through SubscribeSingleInvoice, reconciled
with LookupInvoiceV2; SubscribeInvoices never reports ACCEPTED). Each open hold
is watched until it settles or is cancelled, as a subscription multiplexed on the
hub's one gRPC channel: a thousand held escrows cost no thread each. Release
settles the hold and pays the seller; refund cancels it, or repays the buyer
once the hold was settled into custody. The lock expires by height, so this
mode has a guardian.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Callable, Sequence

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from regtest_cluster.nodes.lnd import LndError

from ...context import AppContext
from ...store.db import PreparedUpdate, update_rows
from ...store.models import HoldInvoice, Order, User
from .. import deadlines, faults, holds, payouts, records, transitions
from ..errors import DomainError
from ..faults import planted
from ..lifecycle import FUNDED_STATES, PENDING, E, S
from ..accounts import Principal
from ..records import OrderRecord

Payouts = Sequence[tuple[int, str]]  # an order's payouts as a pass knows them: (payout id, status)

log = logging.getLogger("escrowlab.ln_hold")
RECONCILE_EVERY_S = 2.0    # holds whose watch ended (a broken stream, a restart) are looked up this often
FULL_RECONCILE_S = 60.0    # and every open hold, watched or not, this often (belt and braces, I11)
FINAL_INVOICE = ("SETTLED", "CANCELED")


def observe_invoice(ctx: AppContext, session: Session, order: OrderRecord, truth: holds.InvoiceTruth,
                    height: int | None, actor: str = "worker") -> OrderRecord:
    """Record what the node says about the order's hold invoice, and react (I9, I11)."""
    seen = {"lnd_state": truth.state, "amt_paid_sats": truth.amt_paid_sats}
    if truth.htlc_expiry_height is not None:
        seen["htlc_expiry_height"] = truth.htlc_expiry_height
    state, amount = S(order.state), order.hold.amount_sats
    if planted(ctx.settings, "funded_without_accept") and truth.state == "OPEN" and state == S.AWAITING_FUNDS:
        truth = holds.InvoiceTruth("ACCEPTED", amount, truth.htlc_expiry_height)
    # (lnd rejects underpayment; an underpaid hold is recorded, not funded: belt and braces)
    funded = truth.state == "ACCEPTED" and state == S.AWAITING_FUNDS and truth.amt_paid_sats >= amount
    if funded:
        seen["accepted_at"] = transitions.now()
    records.set_hold(session, order, **seen)
    if funded:
        return transitions.apply(session, ctx.settings, order, E.FUNDED, actor, height,
                                 detail=f"ACCEPTED {truth.amt_paid_sats} sats, HTLC expiry {truth.htlc_expiry_height}")
    if truth.state == "CANCELED" and state == S.AWAITING_FUNDS:
        return transitions.apply(session, ctx.settings, order, E.FUNDING_TIMEOUT, actor, height,
                                 detail="the node cancelled the unpaid invoice")
    if truth.state == "CANCELED" and (state in FUNDED_STATES - {S.HELD_IN_CUSTODY}
                                      or state in (S.RELEASE_PENDING, S.SPLIT_PENDING)):
        return transitions.apply(session, ctx.settings, order, E.LOCK_LOST, actor, height,
                                 detail="the node cancelled the held payment; the buyer has it back")
    return order


_HOLDS = records.HOLDS
# A settled hold, recorded: its first settlement's moment is kept.
_SETTLED = PreparedUpdate(
    update(_HOLDS).where(_HOLDS.c.order_id == bindparam("order_id", type_=_HOLDS.c.order_id.type))
    .values(lnd_state="SETTLED",
            settled_at=func.coalesce(_HOLDS.c.settled_at, bindparam("now", type_=_HOLDS.c.settled_at.type))))


class LnHoldMode:
    name = "ln_hold"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._watches: dict = {}  # order id -> the hub's Watch of its hold invoice
        self._opened: dict[int, bytes] = {}  # order id -> payment hash, between open() and its commit
        self._lock = threading.Lock()
        self._last_reconcile = self._last_full = 0.0
        self.height: int | None = None
        self.wake = lambda: None  # the worker replaces it, to react at once

    # --- opening: a hold invoice on the hub
    def open(self, session: Session, order: OrderRecord, buyer: User | Principal, funding: dict | None) -> None:
        s = self.ctx.settings
        preimage, payment_hash = holds.new_preimage()
        cltv = transitions.hold_cltv_blocks(s)
        height = self.ctx.tip()
        request = holds.issue(self.ctx.hub, payment_hash, order.price_sats, cltv, s.funding_timeout_s,
                              f"escrowlab order {order.id}")
        records.add_hold(session, order, payment_hash=payment_hash.hex(), preimage_enc=self.ctx.box.seal(preimage),
                         payment_request=request, amount_sats=order.price_sats, cltv_expiry=cltv, created_height=height)
        transitions.apply(session, s, order, E.INVOICE_ISSUED, f"user:{buyer.id}", height,
                          detail=f"hold invoice {payment_hash.hex()[:16]}… cltv {cltv}")
        if self.ctx.shares.mine(order.id):  # else its owner watches it (worker._created)
            with self._lock:  # watched once the order commits (on_created), without reading it back
                self._opened[order.id] = payment_hash

    def expire(self, order_id: int) -> None:
        with self.ctx.db.session(write=False) as session:
            hold = session.scalar(select(HoldInvoice).where(HoldInvoice.order_id == order_id))
            payment_hash = hold.payment_hash if hold else None
        if payment_hash:  # after the claim: the unpaid invoice goes, an HTLC (if any) fails back
            holds.cancel(self.ctx.hub, bytes.fromhex(payment_hash))

    # --- watching: one subscription per open hold, plus reconciliation
    def start(self) -> None:
        self._stop.clear()  # a restarted worker reuses this mode
        self.reconcile(full=True)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for w in watches:
            w.cancel()

    def opened_here(self, order_id: int) -> bool:
        with self._lock:
            return order_id in self._opened

    def on_created(self, order_id: int) -> None:
        with self._lock:
            payment_hash = self._opened.pop(order_id, None)
        if payment_hash is not None:
            self._watch(order_id, payment_hash)
            return
        with self._db_read() as session:
            order = records.read(session, order_id)
            if order is None or order.hold is None or S(order.state) != S.AWAITING_FUNDS:
                return
            payment_hash = bytes.fromhex(order.hold.payment_hash)
        self._watch(order_id, payment_hash)

    def _db_read(self):
        return self.ctx.db.session(write=False)

    def _watch(self, order_id: int, payment_hash: bytes) -> None:
        """Follow the hold until it is final. What the node says of it reaches this app's pool
        thread only where there is something to record: ACCEPTED (the buyer paid: FUNDED) and
        CANCELED. Its first OPEN tells nothing new, and only this app can settle it, where its
        drive recorded the SETTLED; the stream ends there without handing it over."""
        with self._lock:
            current = self._watches.get(order_id)
            if (current is not None and not current.done) or self._stop.is_set():
                return  # (a done one is a stream that ended before it was recorded: watch again)

            def update(invoice: dict) -> bool:
                if self._stop.is_set():
                    return True
                self._observe(order_id, holds.truth_from(invoice))
                return invoice.get("state") in FINAL_INVOICE

            def broke(error: Exception) -> None:
                if not self._stop.is_set():
                    log.info("invoice stream for order %s ended: %s (reconciliation takes over)", order_id, error)

            told = ("ACCEPTED", "CANCELED", "OPEN") if planted(self.ctx.settings, "funded_without_accept") \
                else ("ACCEPTED", "CANCELED")
            self._watches[order_id] = self.ctx.hub.watch_invoice(payment_hash, update, broke,
                                                                 states=told, until=("SETTLED",))

    def watch(self, height: int) -> None:
        self.height = height
        now = time.monotonic()
        if now - self._last_full > FULL_RECONCILE_S:
            self.reconcile(full=True)
        elif now - self._last_reconcile > RECONCILE_EVERY_S:
            self.reconcile()

    def _observe(self, order_id: int, truth: holds.InvoiceTruth) -> None:
        """Record what the node says of the order's hold. It wakes the worker only through the
        transition it may commit: one to a pending outcome wakes it (WAKE_ORDERS); a buyer's
        payment accepted (FUNDED) leaves the worker nothing to do until a deadline, which its
        clock finds."""
        try:
            with self.ctx.db.session() as session:
                observe_invoice(self.ctx, session, records.read(session, order_id), truth, self.height)
        except DomainError as exc:
            log.info("order %s: %s", order_id, exc)

    def reconcile(self, full: bool = False) -> None:
        """Compare open orders' hold invoices with the node, act on differences (I11), and
        watch each open hold again. Without ``full``, only holds nothing is watching."""
        self._last_reconcile = time.monotonic()
        if full:
            self._last_full = self._last_reconcile
        open_states = [s.value for s in (S.AWAITING_FUNDS, *FUNDED_STATES, *PENDING)]
        with self._db_read() as session:
            rows = session.execute(select(Order.id, HoldInvoice.payment_hash, HoldInvoice.lnd_state)
                                   .join(HoldInvoice, HoldInvoice.order_id == Order.id)
                                   .where(Order.state.in_(open_states), Order.escrow_mode == self.name)).all()
        with self._lock:  # (ended watches are dropped here, not each by a trip to a pool thread)
            self._watches = {order_id: w for order_id, w in self._watches.items() if not w.done}
            watched = set(self._watches)
        # A full pass asks for every open and held invoice in one list (a lookup each had cost
        # the app a burst of CPU every minute with 900 held); one not in it has become final.
        listed = holds.pending(self.ctx.hub) if full and rows else {}
        for order_id, payment_hash, lnd_state in rows:
            if lnd_state == "SETTLED" or (order_id in watched and not full) or not self.ctx.shares.mine(order_id):
                continue
            truth = listed.get(payment_hash) or holds.lookup(self.ctx.hub, bytes.fromhex(payment_hash))
            if truth.state != lnd_state or planted(self.ctx.settings, "funded_without_accept"):
                self._observe(order_id, truth)  # a write only where the node says something new
            if truth.state not in FINAL_INVOICE:
                self._watch(order_id, bytes.fromhex(payment_hash))

    # --- the guardian (I7)
    def guardian_due(self, session: Session, height: int) -> list[deadlines.Due]:
        return deadlines.guarded(self.ctx, session, self.name, height)

    # --- outcomes: settle, cancel, pay
    def _settled(self, order: OrderRecord, height: int | None) -> bool:
        """Settle the hold (idempotent) and confirm it; False if the node cancelled it instead."""
        ctx, hold = self.ctx, order.hold
        if hold.lnd_state == "SETTLED":
            return True
        try:
            # Settle first: lnd refuses it unless the hold is ACCEPTED (and repeats it when
            # already SETTLED), so the common case needs no lookup before or after it.
            holds.settle(ctx.hub, ctx.box.open(hold.preimage_enc))
        except LndError:
            truth = holds.lookup(ctx.hub, bytes.fromhex(hold.payment_hash))  # OPEN or CANCELED
        else:
            faults.point("after_settle", ctx.settings.fault_points)
            truth = holds.InvoiceTruth("SETTLED", hold.amt_paid_sats, hold.htlc_expiry_height)
        with ctx.db.session() as session:
            if truth.state == "SETTLED":  # the common case: one UPDATE, the order not read again
                _SETTLED.run(session, {"order_id": order.id, "now": transitions.now()})
                order.hold = hold._replace(lnd_state="SETTLED")  # the record as the row now is
                return True
            fresh = records.read(session, order.id)
            if truth.state == "CANCELED":
                observe_invoice(ctx, session, fresh, truth, height)
            else:
                records.set_hold(session, fresh, lnd_state=truth.state)
            return False

    def _cancelled(self, order: OrderRecord) -> str:
        """Cancel the hold and confirm; returns the node's final state (CANCELED or SETTLED)."""
        payment_hash = bytes.fromhex(order.hold.payment_hash)
        try:
            holds.cancel(self.ctx.hub, payment_hash)
        except LndError as exc:
            if "already settled" not in exc.message:
                raise
        faults.point("after_cancel", self.ctx.settings.fault_points)
        truth = holds.lookup(self.ctx.hub, payment_hash)
        with self.ctx.db.session() as session:
            update_rows(session, _HOLDS, {"order_id": order.id}, {"lnd_state": truth.state})
        return truth.state

    def _paid(self, order: OrderRecord, known: Payouts | None = None) -> bool:
        """Whether the order's payouts have all SUCCEEDED; tries those that have not. A payment that
        ends SUCCEEDED later takes the order's next step at once, on this record (``carry_on``),
        knowing the order's payouts as this pass left them with that one SUCCEEDED (``known``):
        if that is all of them, the step reads none (a release's one payout was read again)."""
        if known is not None and all(status == "SUCCEEDED" for _pid, status in known):
            made = known
        else:
            made = payouts.ensure(self.ctx, order)  # a payout read as SUCCEEDED there is never tried again

        def then(ended: int) -> Callable[[], None]:
            now_known = tuple((pid, "SUCCEEDED" if pid == ended else status) for pid, status in made)
            return functools.partial(self.ctx.carry_on, order.id,
                                     functools.partial(self._step, order, known=now_known))
        done = all(status == "SUCCEEDED" or payouts.attempt(self.ctx, pid, order.fee_sats, then(pid)) == "SUCCEEDED"
                   for pid, status in made)
        if done and planted(self.ctx.settings, "double_payout"):
            done = all(payouts.attempt(self.ctx, pid, order.fee_sats) == "SUCCEEDED" for pid, _status in made)
        return done

    def drive(self, order_id: int, height: int | None) -> str:
        """Take one step towards completing the order's pending outcome; returns its state.

        The order is read once: what the step needs of it (its parties, amounts and hold) is
        fixed once the outcome is pending, and the hold's own state is re-read where it is
        written (``_settled``). Recording the outcome (``finish``) compares and swaps against the
        state and version read here, so a pass reads the order once; only a hold the node
        cancelled instead of settling is recorded on the order read again."""
        return self._step(_load(self.ctx, order_id), height)

    def _step(self, order: OrderRecord, height: int | None, known: Payouts | None = None) -> str:
        """``drive``'s step on ``order`` as a pass read it: by ``drive``, or by the pass that sent
        a payout which has now SUCCEEDED (``_paid``, which gives it the order's payouts as that
        pass knows them: ``known``). The record is then as that pass left it (the hold it settled
        included); if the order has changed since, the compare-and-swap in ``finish`` refuses the
        step and the worker's next tick reads the order afresh."""
        ctx, order_id = self.ctx, order.id
        state, done = S(order.state), None
        if state == S.HELD_IN_CUSTODY:
            self._settled(order, height)
        elif state == S.RELEASE_PENDING:
            faults.point("after_claim_release", ctx.settings.fault_points)
            if self._settled(order, height) and self._paid(order, known):
                done = finish(ctx, order_id, E.RELEASED, height,
                              f"seller paid {order.price_sats - order.fee_sats} sats", order)
        elif state == S.SPLIT_PENDING:
            if self._settled(order, height) and self._paid(order, known):
                done = finish(ctx, order_id, E.SPLIT_DONE, height, "both parties paid", order)
        elif state == S.REFUND_PENDING:
            final = order.hold.lnd_state if order.hold.lnd_state == "SETTLED" else self._cancelled(order)
            if final == "CANCELED":
                done = finish(ctx, order_id, E.REFUNDED, height,
                              "hold invoice cancelled: the buyer's HTLC is failed back", order)
            elif final == "SETTLED" and self._paid(order, known):
                done = finish(ctx, order_id, E.REFUNDED, height, f"buyer repaid {order.price_sats} sats from custody",
                              order)
        return done or order.state


def _load(ctx: AppContext, order_id: int) -> OrderRecord:
    return records.load(ctx.db, order_id)


def finish(ctx: AppContext, order_id: int, event: E, height: int | None, detail: str,
           order: OrderRecord | None = None) -> str:
    """Record a completed outcome (shared by every mode); returns the order's new state. ``order``
    is the order as the caller read it (``_load``), if it did: the transition's compare-and-swap
    checks that its state and version still hold, so it need not be read again."""
    with ctx.db.session() as session:
        if order is None:
            order = records.read(session, order_id)
        transitions.apply(session, ctx.settings, order, event, "worker", height, detail=detail)
        return order.state
