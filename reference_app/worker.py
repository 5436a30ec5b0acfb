"""The background worker: it only schedules. Each tick it selects what came due
(deadlines, the guardian's lock horizons) and hands it to services/deadlines.py,
lets each escrow mode watch its funding, and drives pending outcomes through
the modes. In-process for development, or its own process (``escrowlab app
worker``). Restart-safe: each mode reconciles with its nodes when the worker
starts (I11). Of several app processes, each worker carries out its own share of
the orders (shares.py).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from regtest_cluster.nodes.threadnames import name_os_thread, named

from .context import AppContext
from .services import deadlines, holds, orders, payouts
from .services.errors import DomainError
from .shares import CREATED, NOTIFIED, OUTCOME
from .store.db import WAKE_ORDERS

log = logging.getLogger("escrowlab.worker")


class Worker:
    # A drive settles or cancels a hold (one unary call) and starts payouts without waiting for
    # them (payouts.py), so it never blocks for long: a small pool keeps up.
    def __init__(self, ctx: AppContext, interval_s: float | None = None, threads: int = 8) -> None:
        self.ctx = ctx
        self.interval = interval_s if interval_s is not None else ctx.settings.worker_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="escrow-drive",
                                        initializer=name_os_thread)
        self._driving: set[int] = set()
        self._lock = threading.Lock()
        self.height: int | None = None
        self._timed_at = float("-inf")  # when guardian and deadlines last looked (monotonic)
        self._timed_height: int | None = None  # ... and at which height
        self.errors = 0
        for mode in ctx.modes.values():
            mode.wake = self.wake
        self.shares = ctx.shares  # of several app processes, the orders this worker carries out
        ctx.wake_worker = self.wake
        ctx.carry_on = self.carry_on
        ctx.db.on_commit[WAKE_ORDERS] = self._committed
        ctx.on_order_created.append(self._created)

    # --- lifecycle
    def start(self) -> None:
        self.shares.listen(self._heard)
        for mode in self.ctx.modes.values():
            mode.start()
        self._thread = threading.Thread(target=named(self._run), name="escrow-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for mode in self.ctx.modes.values():
            mode.stop()
        if self._thread:
            self._thread.join(timeout=10)
        self.ctx.stop_following()
        self.shares.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _new_block(self, _height: int) -> None:
        """A block came (the hub's block stream): what it made due is looked for at once."""
        self._wake.set()

    def _committed(self, noted: set[tuple[int, str]]) -> None:
        """A commit moved these orders (id, escrow mode) to an outcome pending: carry out this
        process's own at once, each as a pass of the worker's (``carry_on``), and tell the owners
        of the others. The commit used to wake the worker, whose tick selected the pending orders
        to find this one: a thread woken, a statement and a tick for each escrow's confirm."""
        for order_id, mode_name in noted:
            if not self.shares.mine(order_id):
                self.shares.tell(order_id, OUTCOME)
                continue
            mode = self.ctx.modes.get(mode_name)
            if mode is None or payouts.in_flight_here(self.ctx, order_id):
                self.wake()  # as drive_pending would: its payment's end carries it on, or the tick sees
                continue
            self.carry_on(order_id, functools.partial(mode.drive, order_id))

    def _heard(self, what: str, ident: int) -> None:
        """Another app process committed something for an order this one owns (``ident`` is the
        order's id), or a notification for a user whose stream may be open here (the user's)."""
        if what == CREATED:
            self._created(ident)
        elif what == NOTIFIED:
            self.ctx.bell.ring((ident,))
        else:
            self.wake()

    def _created(self, order_id: int) -> None:
        if not self.shares.mine(order_id):  # its owner watches it
            self.shares.tell(order_id, CREATED)
            return
        for mode in self.ctx.modes.values():  # the mode that opened it in this process knows it
            if getattr(mode, "opened_here", lambda _id: False)(order_id):
                mode.on_created(order_id)
                return
        mode = self.ctx.modes.get(orders.escrow_mode_of(self.ctx, order_id))
        if mode:
            mode.on_created(order_id)

    def _run(self) -> None:
        woken = False
        while not self._stop.is_set():
            try:
                self.ctx.follow_blocks(self._new_block)  # again, if the stream ended (a hub restarted)
                self.tick(fresh_height=not woken)
            except Exception:  # a bad tick must not kill the worker; it retries next tick
                self.errors += 1
                log.exception("worker tick failed")
            woken = self._wake.wait(self.interval)
            self._wake.clear()

    # --- one pass
    def tick(self, fresh_height: bool = True) -> None:
        """One pass. The height is the one the hub's block stream pushed (``AppContext.
        follow_blocks``; a running worker reopens it if it ended), and each block wakes it. While no
        stream runs, a tick on the clock asks the hub for the height, and a tick woken by a
        commit (several an escrow) takes the height read at most ``AppContext.TIP_MAX_AGE_S``
        ago: what came due by the chain is then acted on at most that much later, never earlier.

        A woken tick is for what woke it (an outcome to carry out, a mode's news, a block): it
        looks for what came due by time or height (guardian, deadlines) only if the height
        changed, or the last look was an interval ago. Under load the worker is woken many times
        an interval, and never waits out a clock tick: these two selections then ran on every
        wake, a read session each."""
        ctx = self.ctx
        if ctx.hub is not None and fresh_height and not ctx.tip_pushed:
            self.height = holds.block_height(ctx.hub)
            ctx.note_tip(self.height)
        else:
            self.height = ctx.tip()
        now = time.monotonic()
        if fresh_height or self.height != self._timed_height or now - self._timed_at >= self.interval:
            self._timed_at, self._timed_height = now, self.height
            self.guardian(self.height)
            self.deadlines(self.height)
        for mode in self.ctx.modes.values():
            try:
                mode.watch(self.height)
            except Exception:  # one mode's nodes failing must not stop the others' outcomes
                self.errors += 1
                log.exception("%s: watching failed; retrying next tick", mode.name)
        self.drive_pending(self.height)

    # --- time: what came due is selected here and decided by services/deadlines.py, which
    # re-checks it in the claiming transaction (the order may have moved on since)
    def guardian(self, height: int) -> None:
        """When a lock nears expiry: cancel an unshipped order, settle a shipped one into custody (I7)."""
        for due in deadlines.guardian_due(self.ctx, height):
            if self.shares.mine(due.order_id):
                deadlines.claim(self.ctx, due, height)

    def deadlines(self, height: int) -> None:
        for due in deadlines.deadlines_due(self.ctx, height):
            if self.shares.mine(due.order_id):
                deadlines.claim(self.ctx, due, height)

    # --- pending outcomes
    def drive_pending(self, height: int) -> None:
        for order_id, mode_name in orders.pending(self.ctx):
            if not self.shares.mine(order_id):
                continue
            mode = self.ctx.modes.get(mode_name)
            if payouts.in_flight_here(self.ctx, order_id):  # its payment's end carries it on, or wakes us
                continue
            if mode is not None and self._claim(order_id):
                self._pool.submit(self._drive, order_id, functools.partial(mode.drive, order_id), height)

    def carry_on(self, order_id: int, step: Callable[[int | None], object]) -> None:
        """Run ``step(height)`` as a pass over the order, now: a commit moved it to an outcome
        pending (``_committed``: the mode's drive), or a payout of the order ended here
        (payouts._send: the mode records the outcome on the order as its last pass read it).
        Without it, the end woke the worker, whose tick selected the pending orders, and a pass
        read the order again to record the release: two statements an escrow, and a tick. The
        step runs on the drive pool, not on the calling thread (the event loop, the hub client's
        callbacks): a split's other payout may still need a node call, which must not hold up
        other payments' ends. If a pass over the order is running, or the worker has stopped,
        the worker's next tick sees to the order instead."""
        if self._stop.is_set():
            return
        if not self._claim(order_id):
            self.wake()
            return
        try:
            self._pool.submit(self._drive, order_id, step, self.height)
        except RuntimeError:  # stopping: the pool shut down since (the commit that called must not fail)
            with self._lock:
                self._driving.discard(order_id)

    def _claim(self, order_id: int) -> bool:
        """One pass over an order at a time: False if one is running."""
        with self._lock:
            if order_id in self._driving:
                return False
            self._driving.add(order_id)
            return True

    def _drive(self, order_id: int, step: Callable[[int | None], object], height: int | None) -> None:
        # A drive that ends the order wakes no one: nothing is left to carry out for it, and
        # whatever else is pending woke the worker when it was committed (WAKE_ORDERS) or when
        # its payment ended. The wake after every terminal drive was one tick in three.
        try:
            step(height)
        except DomainError as exc:  # e.g. the order changed meanwhile: the next tick reads it afresh
            log.info("order %s: %s", order_id, exc)
        except Exception:
            self.errors += 1
            log.exception("driving order %s failed; retrying next tick", order_id)
        finally:
            with self._lock:
                self._driving.discard(order_id)
