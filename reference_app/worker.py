"""The background worker: enforces deadlines and the guardian, lets each
escrow mode watch its funding, and drives pending outcomes. In-process for
development, or its own process (``escrowlab app worker``). Restart-safe: each
mode reconciles with its nodes when the worker starts (I11).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import or_, select

from .context import AppContext
from .services import holds, transitions
from .services.errors import DomainError
from .services.faults import planted
from .services.lifecycle import PENDING, TERMINAL, E, S
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


class Worker:
    # A drive blocks on the hub while the payout's SendPaymentV2 runs (~1 s), so this pool caps
    # releases per second: with 8 threads and 48 escrows in flight, settle+payout queued for ~7 s.
    def __init__(self, ctx: AppContext, interval_s: float | None = None, threads: int = 32) -> None:
        self.ctx = ctx
        self.interval = interval_s if interval_s is not None else ctx.settings.worker_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="escrow-drive")
        self._driving: set[int] = set()
        self._lock = threading.Lock()
        self.height: int | None = None
        self.errors = 0
        for mode in ctx.modes.values():
            mode.wake = self.wake
        ctx.on_order_created.append(self._created)

    # --- lifecycle
    def start(self) -> None:
        for mode in self.ctx.modes.values():
            mode.start()
        self._thread = threading.Thread(target=self._run, name="escrow-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for mode in self.ctx.modes.values():
            mode.stop()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _created(self, order_id: int) -> None:
        with self.ctx.db.session(write=False) as session:
            mode = self.ctx.modes.get(session.get(Order, order_id).escrow_mode)
        if mode:
            mode.on_created(order_id)

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
        self.height = holds.block_height(self.ctx.hub) if self.ctx.hub else self.ctx.tip()
        self.ctx.note_tip(self.height)
        self.guardian(self.height)
        self.deadlines(self.height)
        for mode in self.ctx.modes.values():
            try:
                mode.watch(self.height)
            except Exception:  # one mode's nodes failing must not stop the others' outcomes
                self.errors += 1
                log.exception("%s: watching failed; retrying next tick", mode.name)
        self.drive_pending(self.height)

    def _ids(self, *conditions) -> list[int]:
        with self.ctx.db.session(write=False) as session:
            return list(session.scalars(select(Order.id).where(*conditions)))

    # --- time
    def guardian(self, height: int) -> None:
        """When a lock nears expiry: cancel an unshipped order, settle a shipped one into custody (I7)."""
        if planted(self.ctx.settings, "no_guardian"):
            return
        with self.ctx.db.session(write=False) as session:
            due = [d for mode in self.ctx.modes.values() for d in mode.guardian_due(session, height)]
        for order_id, event in due:
            self._timed(order_id, height, event, "guardian", f"lock horizon reached at height {height}")

    def deadlines(self, height: int) -> None:
        states = [st.value for st in (*DEADLINE_EVENTS, S.HELD_IN_CUSTODY)]
        for order_id in self._ids(Order.state.in_(states),
                                  or_(Order.deadline_at <= transitions.now(), Order.deadline_height <= height)):
            self._timed(order_id, height)

    def _timed(self, order_id: int, height: int, event: E | None = None, actor: str = "worker",
               detail: str = "deadline passed") -> None:
        try:
            with self.ctx.db.session() as session:
                order = session.get(Order, order_id)
                state = S(order.state)
                if event is None and state == S.HELD_IN_CUSTODY:
                    event = E.RULING_TIMEOUT_RELEASE if order.delivered_evidence and not order.disputed \
                        else E.RULING_TIMEOUT_REFUND
                    detail = "ruling deadline passed: default ruling"
                event = event or DEADLINE_EVENTS[state]
                transitions.apply(session, self.ctx.settings, order, event, actor, height, detail=detail,
                                  **({"disputed": True} if event == E.DELIVERY_TIMEOUT else {}))
                if event == E.DELIVERY_TIMEOUT:
                    session.add(Dispute(order_id=order.id, opened_by=order.buyer_id,
                                        reason="delivery was not confirmed in time"))
                if event == E.FUNDING_TIMEOUT:
                    session.get(Listing, order.listing_id).stock += order.quantity
                mode = self.ctx.modes.get(order.escrow_mode)
            if event == E.FUNDING_TIMEOUT and mode:
                mode.expire(order_id)  # after the claim committed (I5)
        except DomainError as exc:
            log.info("order %s: %s", order_id, exc)

    # --- pending outcomes
    def drive_pending(self, height: int) -> None:
        states = [s.value for s in (*PENDING, S.HELD_IN_CUSTODY)]
        with self.ctx.db.session(write=False) as session:
            rows = session.execute(select(Order.id, Order.escrow_mode).where(Order.state.in_(states))).all()
        for order_id, mode_name in rows:
            mode = self.ctx.modes.get(mode_name)
            with self._lock:
                if mode is None or order_id in self._driving:
                    continue
                self._driving.add(order_id)
            self._pool.submit(self._drive, mode, order_id, height)

    def _drive(self, mode, order_id: int, height: int) -> None:
        try:
            if S(mode.drive(order_id, height)) in TERMINAL:
                self.wake()
        except DomainError as exc:
            log.info("order %s: %s", order_id, exc)
        except Exception:
            self.errors += 1
            log.exception("driving order %s failed; retrying next tick", order_id)
        finally:
            with self._lock:
                self._driving.discard(order_id)
