"""The background worker: watches invoices, enforces deadlines and the
guardian, and drives pending outcomes. In-process for development, or its own
process (``escrowlab app worker``). Restart-safe: it starts by reconciling
every open order with the node (I11).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import or_, select

from regtest_cluster.nodes.lnd import LndError

from .context import AppContext
from .services import holds, orders, settlement, transitions
from .services.errors import DomainError
from .services.faults import planted
from .services.lifecycle import FUNDED_STATES, PENDING, TERMINAL, E, S
from .store.models import Dispute, Listing, Order

log = logging.getLogger("escrowlab.worker")

DEADLINE_EVENTS = {
    S.CREATED: E.FUNDING_TIMEOUT,
    S.AWAITING_FUNDS: E.FUNDING_TIMEOUT,
    S.FUNDED: E.SHIP_TIMEOUT,
    S.SHIPPED: E.DELIVERY_TIMEOUT,
    S.DELIVERED: E.DISPUTE_WINDOW_END,
    S.DISPUTED: E.GUARDIAN_CUSTODY,
}
RECONCILE_EVERY_S = 2.0


class Worker:
    def __init__(self, ctx: AppContext, interval_s: float | None = None, threads: int = 8) -> None:
        self.ctx = ctx
        self.interval = interval_s if interval_s is not None else ctx.settings.worker_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="escrow-drive")
        self._driving: set[int] = set()
        self._watching: set[int] = set()
        self._lock = threading.Lock()
        self._last_reconcile = 0.0
        self.height: int | None = None
        self.errors = 0
        ctx.on_order_created.append(self.watch)

    # --- lifecycle
    def start(self) -> None:
        self.reconcile_all()
        self._thread = threading.Thread(target=self._run, name="escrow-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad tick must not kill the worker; it retries next tick
                self.errors += 1
                log.exception("worker tick failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    # --- one pass
    def tick(self) -> None:
        self.height = holds.block_height(self.ctx.hub)
        self.ctx.note_tip(self.height)
        self.guardian(self.height)
        self.deadlines(self.height)
        if time.monotonic() - self._last_reconcile > RECONCILE_EVERY_S:
            self.reconcile_all()
        self.drive_pending(self.height)

    def _ids(self, *conditions) -> list[int]:
        with self.ctx.db.session() as session:
            return list(session.scalars(select(Order.id).where(*conditions)))

    # --- funding: one subscription per unpaid invoice, plus reconciliation
    def watch(self, order_id: int) -> None:
        with self._lock:
            if order_id in self._watching or self._stop.is_set():
                return
            self._watching.add(order_id)
        threading.Thread(target=self._subscribe, args=(order_id,), name=f"invoice-{order_id}", daemon=True).start()

    def _subscribe(self, order_id: int) -> None:
        try:
            with self.ctx.db.session() as session:
                order = session.get(Order, order_id)
                if order is None or order.hold is None or S(order.state) != S.AWAITING_FUNDS:
                    return
                payment_hash = bytes.fromhex(order.hold.payment_hash)
            for invoice in self.ctx.hub.subscribe_single_invoice(payment_hash):
                if self._stop.is_set():
                    return
                if invoice.get("state") in ("ACCEPTED", "SETTLED", "CANCELED") or planted(
                        self.ctx.settings, "funded_without_accept"):
                    self._observe(order_id, holds.truth_from(invoice))
                    return
        except (LndError, DomainError) as exc:
            log.info("invoice stream for order %s ended: %s (reconciliation takes over)", order_id, exc)
        finally:
            with self._lock:
                self._watching.discard(order_id)

    def _observe(self, order_id: int, truth: holds.InvoiceTruth) -> None:
        try:
            with self.ctx.db.session() as session:
                order = session.get(Order, order_id)
                orders.observe_invoice(self.ctx, session, order, truth, self.height)
        except DomainError as exc:
            log.info("order %s: %s", order_id, exc)
        self.wake()

    def reconcile_all(self) -> None:
        """Compare every open order's hold invoice with the node, and act on differences (I11)."""
        self._last_reconcile = time.monotonic()
        open_states = [s.value for s in (S.AWAITING_FUNDS, *FUNDED_STATES, *PENDING)]
        for order_id in self._ids(Order.state.in_(open_states)):
            with self.ctx.db.session() as session:
                order = session.get(Order, order_id)
                if order.hold is None or order.hold.lnd_state == "SETTLED":
                    continue
                payment_hash = bytes.fromhex(order.hold.payment_hash)
            self._observe(order_id, holds.lookup(self.ctx.hub, payment_hash))
            if S(order.state) == S.AWAITING_FUNDS:
                self.watch(order_id)

    # --- time
    def guardian(self, height: int) -> None:
        """When the lock nears expiry: cancel an unshipped order, settle a shipped one into custody (I7)."""
        s = self.ctx.settings
        if planted(s, "no_guardian"):
            return
        watched = [st.value for st in (S.FUNDED, S.SHIPPED, S.DELIVERED, S.DISPUTED)]
        with self.ctx.db.session() as session:
            due = [o.id for o in session.scalars(select(Order).where(Order.state.in_(watched)))
                   if o.hold and transitions.lock_horizon(s, o.hold.htlc_expiry_height) is not None
                   and height >= transitions.lock_horizon(s, o.hold.htlc_expiry_height)]
        for order_id in due:
            self._timed(order_id, height, guardian=True)

    def deadlines(self, height: int) -> None:
        states = [st.value for st in (*DEADLINE_EVENTS, S.HELD_IN_CUSTODY)]
        due = self._ids(Order.state.in_(states),
                        or_(Order.deadline_at <= transitions.now(), Order.deadline_height <= height))
        for order_id in due:
            self._timed(order_id, height)

    def _timed(self, order_id: int, height: int, guardian: bool = False) -> None:
        try:
            with self.ctx.db.session() as session:
                order = session.get(Order, order_id)
                state = S(order.state)
                if guardian:
                    event = E.GUARDIAN_CANCEL if state == S.FUNDED else E.GUARDIAN_CUSTODY
                    detail = f"lock horizon reached at height {height}"
                elif state == S.HELD_IN_CUSTODY:
                    event = E.RULING_TIMEOUT_RELEASE if order.delivered_evidence and not order.disputed \
                        else E.RULING_TIMEOUT_REFUND
                    detail = "ruling deadline passed: default ruling"
                else:
                    event, detail = DEADLINE_EVENTS[state], "deadline passed"
                transitions.apply(session, self.ctx.settings, order, event, "guardian" if guardian else "worker",
                                  height, detail=detail,
                                  **({"disputed": True} if event == E.DELIVERY_TIMEOUT else {}))
                if event == E.DELIVERY_TIMEOUT:
                    session.add(Dispute(order_id=order.id, opened_by=order.buyer_id,
                                        reason="delivery was not confirmed in time"))
                if event == E.FUNDING_TIMEOUT:
                    listing = session.get(Listing, order.listing_id)
                    listing.stock += order.quantity
                    expired_hash = order.hold.payment_hash if order.hold else None
                else:
                    expired_hash = None
            if expired_hash:  # after the claim: the unpaid invoice goes, the HTLC (if any) fails back
                holds.cancel(self.ctx.hub, bytes.fromhex(expired_hash))
        except DomainError as exc:
            log.info("order %s: %s", order_id, exc)

    # --- pending outcomes
    def drive_pending(self, height: int) -> None:
        states = [s.value for s in (*PENDING, S.HELD_IN_CUSTODY)]
        for order_id in self._ids(Order.state.in_(states)):
            with self._lock:
                if order_id in self._driving:
                    continue
                self._driving.add(order_id)
            self._pool.submit(self._drive, order_id, height)

    def _drive(self, order_id: int, height: int) -> None:
        try:
            state = settlement.drive(self.ctx, order_id, height)
            if S(state) in TERMINAL:
                self.wake()
        except DomainError as exc:
            log.info("order %s: %s", order_id, exc)
        except Exception:
            self.errors += 1
            log.exception("driving order %s failed; retrying next tick", order_id)
        finally:
            with self._lock:
                self._driving.discard(order_id)
