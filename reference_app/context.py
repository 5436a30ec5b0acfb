"""What a running app holds: settings, database, encryption box, the hub node."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from regtest_cluster.nodes.lnd_grpc import LndGrpc

from .bell import Bell
from .config import Settings
from .services.crypto import Box
from .shares import NOTIFIED, Shares
from .store.db import Database

log = logging.getLogger("escrowlab.app")


@dataclass
class AppContext:
    settings: Settings
    db: Database
    box: Box
    hub: LndGrpc | None = None
    chain: object | None = None                 # BitcoinRpc of the app's bitcoind (on-chain, custodial)
    modes: dict = field(default_factory=dict)   # escrow mode name -> EscrowMode (services/modes)
    # The worker (or a test) subscribes here to hear about new orders at once.
    on_order_created: list[Callable[[int], None]] = field(default_factory=list)
    # The worker sets this, so a payment that ends on the node's loop is acted on at once.
    wake_worker: Callable[[], None] = lambda: None
    # ... and this: ``carry_on(order_id, step)`` runs ``step(height)`` as a pass of the worker's over
    # the order, on its drive pool (Worker.carry_on). With no worker running, nothing is run.
    carry_on: Callable[[int, Callable[[int | None], object]], None] = lambda order_id, step: None
    # Payouts this process sent and has not yet seen end (payout id -> order id): services/payouts.py
    payouts_in_flight: dict[int, int] = field(default_factory=dict)
    # Clients of users' bound payout nodes, by user id: (binding, client); services/payouts.py
    user_nodes: dict = field(default_factory=dict)
    # Which orders this process's worker carries out, of several app processes (shares.py)
    shares: Shares = field(default_factory=Shares)
    # The notification streams open in this process, rung when a commit notifies their users
    bell: Bell = field(default_factory=Bell)
    _tip: tuple[float, int] | None = None
    _tip_lock: threading.Lock = field(default_factory=threading.Lock)
    _tip_asking: threading.Lock = field(default_factory=threading.Lock)
    # The hub's block stream (follow_blocks), while it runs; while it has told a height, that
    # height is the tip, at any age (_tip_pushed).
    _blocks: object | None = None
    _blocks_token: object | None = None  # the running stream's; a stopped one's callbacks find another
    _blocks_ended_at: float = float("-inf")
    _blocks_retry_s: float = 1.0
    _tip_pushed: bool = False

    TIP_MAX_AGE_S = 1.0
    # A block stream that ended is opened again after BLOCKS_RETRY_S at the earliest, then after
    # twice as long each time it ends before a height came, up to BLOCKS_RETRY_MAX_S: a hub that
    # restarts answers before its chain notifier has started, and logs an error for each try.
    BLOCKS_RETRY_S = 1.0
    BLOCKS_RETRY_MAX_S = 8.0

    def tip(self) -> int | None:
        """The chain height as the hub sees it: pushed by its block stream while that runs
        (``follow_blocks``), else asked and cached for a second. Requests record it on events
        without a node round-trip inside their transaction.

        Once an asked height is a second old, one caller asks the hub, and those that come
        meanwhile wait for its answer: each new order, ship and confirm asks for the height, and
        under load several found it old at once and each asked (GetInfo 0.13 an escrow, 2.4 %
        of the app's CPU in bench escrow, py-spy)."""
        if self.hub is None:
            return None
        height = self.fresh_tip()
        if height is None:
            from .services.holds import block_height

            with self._tip_asking:
                height = self.fresh_tip()  # asked and answered while this one waited
                if height is None:
                    height = block_height(self.hub)
                    self.note_tip(height)
        return height

    def fresh_tip(self) -> int | None:
        """``tip()`` if the height is pushed or was asked under a second ago, else None: never a
        node call."""
        with self._tip_lock:
            if self._tip and (self._tip_pushed or time.monotonic() - self._tip[0] < self.TIP_MAX_AGE_S):
                return self._tip[1]
        return None

    @property
    def tip_pushed(self) -> bool:
        """Whether the hub's block stream keeps the height current (``follow_blocks``)."""
        return self._tip_pushed

    def follow_blocks(self, on_block: Callable[[int], None] = lambda height: None) -> None:
        """Keep the height current from the hub's block stream (ChainNotifier), so that no one
        asks the hub for it: the worker asked GetInfo on every clock tick, five times a second
        while the app was idle. ``on_block(height)`` is told of each block, on the stream's loop.

        Idempotent: called again (the worker does, every tick) it opens a stream that has ended
        again, after ``BLOCKS_RETRY_S`` or longer. While none runs, the height is asked and cached
        as before. A hub without a block stream (a stand-in) is always asked."""
        watch = getattr(self.hub, "watch_blocks", None)
        if watch is None:
            return
        with self._tip_lock:
            running = self._blocks is not None and not self._blocks.done
            if running or time.monotonic() - self._blocks_ended_at < self._blocks_retry_s:
                return
            self._blocks_ended_at = time.monotonic()  # (an open that fails at once waits as well)
            token = self._blocks_token = object()

            def pushed(height: int) -> None:
                with self._tip_lock:
                    if self._blocks_token is not token:  # stopped meanwhile: its block is not the tip
                        return
                    self._tip, self._tip_pushed = (time.monotonic(), height), True
                    self._blocks_retry_s = self.BLOCKS_RETRY_S
                on_block(height)

            def ended(exc: Exception) -> None:
                with self._tip_lock:
                    if self._blocks_token is not token:
                        return
                    if not self._tip_pushed:  # it ended before a height came: wait longer next time
                        self._blocks_retry_s = min(2 * self._blocks_retry_s, self.BLOCKS_RETRY_MAX_S)
                    self._tip_pushed, self._blocks_ended_at = False, time.monotonic()
                log.info("the hub's block stream ended (%s): the height is asked until it is back", exc)

            try:
                self._blocks = watch(pushed, ended)
            except Exception as exc:  # noqa: BLE001 (e.g. the client closed): asked, and tried again later
                self._blocks = None
                log.info("the hub's block stream did not open (%s): the height is asked", exc)

    def stop_following(self) -> None:
        """End the block stream; the height is asked again from now on."""
        with self._tip_lock:
            blocks, self._blocks, self._blocks_token, self._tip_pushed = self._blocks, None, None, False
        if blocks is not None:
            blocks.cancel()

    def notified(self, user_ids: set[int]) -> None:
        """A commit wrote these users notifications (``Database.on_commit``): ring their streams
        here and in the app's other processes."""
        self.bell.ring(user_ids)
        self.shares.tell_all(NOTIFIED, user_ids)

    def note_tip(self, height: int) -> None:
        """The height asked of the hub just now (a pushed one is noted by the stream)."""
        with self._tip_lock:
            if not self._tip_pushed:
                self._tip = (time.monotonic(), height)
