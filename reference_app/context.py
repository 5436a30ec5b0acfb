"""What a running app holds: settings, database, encryption box, the hub node."""

from __future__ import annotations

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

    TIP_MAX_AGE_S = 1.0

    def tip(self) -> int | None:
        """The chain height as the hub sees it, cached for a second: requests
        record it on events without a node round-trip inside their transaction.

        Once the height is a second old, one caller asks the hub, and those that come meanwhile
        wait for its answer: each new order, ship and confirm asks for the height, and under
        load several found it old at once and each asked (GetInfo 0.13 an escrow, 2.4 % of the
        app's CPU in bench escrow, py-spy)."""
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
        """``tip()`` if the cached height is under a second old, else None: never a node call."""
        with self._tip_lock:
            if self._tip and time.monotonic() - self._tip[0] < self.TIP_MAX_AGE_S:
                return self._tip[1]
        return None

    def notified(self, user_ids: set[int]) -> None:
        """A commit wrote these users notifications (``Database.on_commit``): ring their streams
        here and in the app's other processes."""
        self.bell.ring(user_ids)
        self.shares.tell_all(NOTIFIED, user_ids)

    def note_tip(self, height: int) -> None:
        with self._tip_lock:
            self._tip = (time.monotonic(), height)
