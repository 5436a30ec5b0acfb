"""Rings a user's open notification streams when a commit wrote that user a notification.

``GET /notifications/stream`` used to look for new rows every half second: a notification
reached its reader up to 0.5 s after its commit, and every open stream cost a query a
half second while nothing happened. Now the write session notes whom it notified
(``store.db.note_after_commit``), and once it commits, the app rings those users' streams
(``AppContext.notified``), in this process at once and in the app's other processes by a
datagram (``Shares.tell_all``). A ring is a hint to look, never the notification itself:
the stream still reads the rows, and still looks now and then (``notifications.FALLBACK_S``)
for a ring that was lost, or a row written by a path that rings nobody.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator


class Bell:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self.rung = 0  # streams rung, for tests and counters
        self.closed = False  # the server is shutting down: streams end (close)

    @contextmanager
    def listening(self, user_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever ``user_id`` is notified, while the block runs (on an event loop).
        Clear it before reading the rows: a ring after the clear is then never missed."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._streams.setdefault(user_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                streams = self._streams.get(user_id)
                if streams is not None:
                    streams.discard(entry)
                    if not streams:
                        del self._streams[user_id]

    def ring(self, user_ids: Iterable[int]) -> None:
        """From any thread: wake the streams open for these users."""
        with self._lock:
            entries = [entry for user_id in user_ids for entry in self._streams.get(user_id, ())]
        for loop, event in entries:
            # counted before the stream can wake and look (counted after, a stream, or a test,
            # woken at once could read the count before this thread went on)
            self.rung += 1
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # its loop has closed: the stream is ending
                self.rung -= 1

    def close(self) -> None:
        """The server shuts down: every open stream ends (once rung, it sees ``closed``). uvicorn
        waits for open responses to finish before it stops, and a stream never finishes by itself."""
        self.closed = True
        with self._lock:
            users = list(self._streams)
        self.ring(users)
