"""An httpx client for each calling thread, for the node clients that many threads share.

httpcore 1.0.9 (the newest release) can close a pooled connection that another thread has just
been handed and is using (encode/httpcore#1110; its fix, #1111, is unmerged): a pool pass picks
an idle connection to close under the pool's lock and closes it after releasing the lock, while
another thread starts its request on it. The request then fails with "[Errno 9] Bad file
descriptor" or hangs until its read timeout. It failed an app's bitcoind ``getblockcount``, and a
catalogue story with it, under load. With a client for each thread, no pool is shared between
threads. A thread's client goes with the thread; ``close`` closes every client still open.

For plain-HTTP loopback clients (bitcoind, ldkd), where a new connection is cheap. LND's REST
client is TLS: the harness's keep one pool (a client a thread would cost a handshake for each
short-lived thread: the harness pays each hold invoice from one); the app's client of a seller's
node keeps an ``http.client`` connection for each of its drive threads (``lnd._ThreadConnections``).
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Callable, Generic, TypeVar

import httpx

T = TypeVar("T")  # anything with close()


class PerThread(Generic[T]):
    """One ``make()`` for each calling thread, kept while the thread lives; ``close`` closes
    every one still open."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._local = threading.local()
        self._open: weakref.WeakSet[T] = weakref.WeakSet()

    def peek(self) -> T | None:
        """The calling thread's, if it has made one (and not dropped it)."""
        return getattr(self._local, "client", None)

    def get(self) -> T:
        """The calling thread's, made at its first call."""
        client = self.peek()
        if client is None:
            client = self._local.client = self._make()
            self._open.add(client)
        return client

    def drop(self) -> None:
        """Close the calling thread's and forget it: its next ``get`` makes another."""
        client = self.peek()
        if client is not None:
            client.close()
            self._local.client = None

    def close(self) -> None:
        for client in list(self._open):
            client.close()


class ThreadClients(PerThread[httpx.Client]):
    def __init__(self, **client_options) -> None:
        """``client_options``: what each thread's ``httpx.Client`` is made with."""
        super().__init__(functools.partial(httpx.Client, **client_options))
