"""Which app process carries out which order's work, when N processes serve one app
(``escrowlab app serve --processes N``, each the API and a worker).

Any process answers any request, but one process, the order's *owner* (its id modulo N),
watches its funding, claims its deadlines, settles it and pays it out; the first process alone
does the work that belongs to no one order. Before this, every worker
drove every pending order: the losers of each compare-and-swap had loaded the order, asked the
hub and been refused for nothing, and two processes cost more CPU per escrow than one.

A process that commits something the owner must act on (a new order, an outcome now pending)
tells the owner at once, in a datagram on a Unix socket in the abstract namespace (named by the
app's ``process_group`` and the owner's index): no file, no database round trip. A message is a
hint to act sooner, never needed for correctness: one that is lost (the owner restarting, its
queue full) is found by the owner's next tick (``worker_interval_s``) or its reconciliation.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Callable

log = logging.getLogger("escrowlab.shares")

CREATED, OUTCOME = "c", "o"  # a new order to watch; an outcome to carry out
NOTIFIED = "n"  # told to every process, with users' ids: a notification committed for each (bell.py)
IDS_PER_MESSAGE = 16  # a message carries at most this many ids (each within RECV_BYTES)
RECV_BYTES = 256


class Shares:
    def __init__(self, index: int = 0, count: int = 1, group: str = "") -> None:
        if count > 1 and not group:
            raise ValueError("several app processes need a process_group to find each other")
        if not 0 <= index < count:
            raise ValueError(f"process_index {index} is not one of 0..{count - 1}")
        self.index, self.count, self.group = index, count, group
        self._sock: socket.socket | None = None
        self._out: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.sent = self.dropped = 0  # tell: messages to an order's owner
        self.rings_sent = self.rings_dropped = 0  # tell_all: messages to every other process

    def __repr__(self) -> str:
        return f"Shares({self.index} of {self.count})"

    def owner(self, order_id: int) -> int:
        return order_id % self.count

    def mine(self, order_id: int) -> bool:
        return self.count == 1 or order_id % self.count == self.index

    @property
    def leads(self) -> bool:
        """Whether this process does the work that belongs to no one order (the custodial
        ledger's passes over deposits and withdrawals): the first one does."""
        return self.index == 0

    def _address(self, index: int) -> bytes:
        return f"\0escrowlab-{self.group}-{index}".encode()

    # --- telling the owner
    def tell(self, order_id: int, what: str) -> None:
        """Tell ``order_id``'s owner, if another process, that ``what`` happened to it."""
        if self._out is None or self.mine(order_id):
            return  # a single process, stopped, or the owner is this one
        try:
            self._out.sendto(f"{what} {order_id}".encode(), self._address(self.owner(order_id)))
            self.sent += 1
        except OSError:  # not (yet) listening, or its queue is full: its next tick finds the order
            self.dropped += 1

    def tell_all(self, what: str, ids: set[int] | list[int]) -> None:
        """Tell every other process that ``what`` happened to each of ``ids`` (not order ids:
        no one owns them), in as few messages as fit."""
        if self._out is None:
            return  # a single process, or stopped
        ordered = sorted(ids)
        for start in range(0, len(ordered), IDS_PER_MESSAGE):
            message = " ".join([what, *map(str, ordered[start:start + IDS_PER_MESSAGE])]).encode()
            for index in range(self.count):
                if index == self.index:
                    continue
                try:
                    self._out.sendto(message, self._address(index))
                    self.rings_sent += 1
                except OSError:
                    self.rings_dropped += 1

    # --- hearing from the others
    def listen(self, heard: Callable[[str, int], None]) -> None:
        """Take this process's address and call ``heard(what, id)`` for every id of every
        message (an order's, or for NOTIFIED a user's), on a thread of its own, until ``stop``."""
        if self.count == 1 or self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self._address(self.index))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"app process {self.index} of {self.count} (process_group {self.group!r}) "
                               f"is already running on this host: {exc}") from exc
        self._sock = sock
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._out.setblocking(False)

        def run() -> None:
            while True:
                try:
                    data = sock.recv(RECV_BYTES)
                except OSError:
                    return  # closed by stop
                if not data:
                    return  # shut down by stop (nothing sends an empty message)
                try:
                    what, *ids = data.decode().split()
                    numbers = [int(i) for i in ids]
                except ValueError:
                    continue  # not one of ours
                for number in numbers:
                    try:
                        heard(what, number)
                    except Exception:  # one bad message must not stop the others
                        log.exception("acting on %r for %s failed", what, number)

        self._thread = threading.Thread(target=run, name="shares", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, out, self._sock, self._out = self._sock, self._out, None, None
        for s in (sock, out):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
