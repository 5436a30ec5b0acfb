"""A party's notification stream (the reference API's ``GET /notifications/stream``, server-sent
events), read on a thread of its own, so that a wait for an order's state wakes when the
marketplace pushes the change instead of asking for the order every few hundred milliseconds.

Each order notification is ``kind = "order.<state, lower case>"`` with the order's id. The feed
keeps, for each order someone watches, the states it was told of with a sequence number, and wakes
whoever waits for one of them; of an order nobody watches it keeps only the last state told
(``latest``: a wait that begins later need not ask for it). It reconnects after a drop with
``Last-Event-ID``, so nothing is missed while the marketplace restarts; a wait still asks for the
order now and then (``HttpMarketplace.FALLBACK_S``) in case.

It also records every notification the stream delivered (``delivered``), for the oracle: a
stream that skips one, or does not resume where the client left, breaks I18 even when the inbox
(``GET /me/notifications``) has every notification. ``away()`` cuts the connection and keeps the
feed away until it ends, as a phone losing its network does, to try the resume.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import httpx

RETRY_S = 0.5  # after a dropped or refused stream, before connecting again


class OrderFeed:
    def __init__(self, http: httpx.Client, token: Callable[[], str | None], name: str = "party",
                 after: int = 0) -> None:
        """``after``: the id of the last notification already seen (the stream starts after it)."""
        self._http = http
        self._token = token  # read at each connect: a party logs in again after a restart
        self._changed = threading.Condition()
        self._seq = 0
        self._states: dict[int, list[tuple[int, str]]] = {}  # order id -> (seq, state) told, in order
        self._watchers: dict[int, int] = {}  # order id -> how many waits watch it
        self._last_id = after
        self.after = after  # the stream starts after this notification: older ones are history
        self._delivered: dict[int, tuple[str, int | None]] = {}  # id -> (kind, order id), every one told
        self._latest: dict[int, str] = {}  # order id -> the last state told of it (any order, watched or not)
        self._expected: set[int] = set()  # orders placed while the stream was open: it tells of them from the start
        self._away = threading.Event()  # set while away(): no connection
        self._closed = False
        self._response: httpx.Response | None = None
        self.connects = self.events = 0
        self._thread = threading.Thread(target=self._run, name=f"feed-{name}", daemon=True)
        self._thread.start()

    # --- waiting
    @contextmanager
    def watching(self, order_id: int) -> Iterator[None]:
        """While inside, what is told of ``order_id`` is kept for ``wait``. Several waits may watch
        one order at once; what was told of it is dropped when the last of them leaves."""
        with self._changed:
            self._watchers[order_id] = self._watchers.get(order_id, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                left = self._watchers.pop(order_id) - 1
                if left:
                    self._watchers[order_id] = left
                else:
                    self._states.pop(order_id, None)

    def expect(self, order_id: int) -> None:
        """``order_id`` was placed while the stream was open: it will tell of all its changes."""
        with self._changed:
            self._expected.add(order_id)

    def knows(self, order_id: int) -> bool:
        """Whether the stream tells of ``order_id`` from its first change on (it told of it already,
        or the order was placed while the stream was open); else its changes may predate it."""
        with self._changed:
            return order_id in self._latest or order_id in self._expected

    def latest(self, order_id: int) -> str | None:
        """The last state the stream told of ``order_id`` since it began, or None: none yet."""
        with self._changed:
            return self._latest.get(order_id)

    def mark(self) -> int:
        """The sequence number now: ``wait`` after it sees only what is told from here on."""
        with self._changed:
            return self._seq

    def wait(self, order_id: int, states: tuple[str, ...], after: int, timeout: float) -> str | None:
        """The first of ``states`` told for ``order_id`` (watched) after ``mark()`` gave ``after``, or
        None when ``timeout`` passes first (a closed feed tells nothing more: its waits run out)."""
        def told() -> str | None:
            return next((state for seq, state in self._states.get(order_id, ()) if seq > after and state in states),
                        None)

        with self._changed:
            self._changed.wait_for(lambda: told() is not None, timeout)
            return told()

    # --- what the stream delivered, for the oracle
    def delivered(self) -> dict[int, tuple[str, int | None]]:
        """Every notification the stream delivered so far: id -> (kind, order id)."""
        with self._changed:
            return dict(self._delivered)

    def caught_up(self, last_id: int, timeout: float) -> bool:
        """Wait until the stream has delivered up to ``last_id`` (a notification the inbox shows),
        or ``timeout`` passes; whether it did."""
        with self._changed:
            return self._changed.wait_for(lambda: self._last_id >= last_id, timeout)

    @contextmanager
    def away(self, back_within: float = 10.0) -> Iterator[None]:
        """Cut the connection now and stay away inside; then connect again with ``Last-Event-ID``
        (the last notification read), as a client that lost its network resumes. Leaving waits up
        to ``back_within`` seconds for the new connection, so what follows is news to it."""
        self._away.set()
        self._hang_up()
        connects = self.connects
        try:
            yield
        finally:
            self._away.clear()
            with self._changed:
                self._changed.wait_for(lambda: self.connects > connects or self._closed, back_within)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._hang_up()
        self._thread.join(5)

    def _hang_up(self) -> None:
        response = self._response
        if response is not None:
            # Closing a socket from another thread does not wake a recv blocked on it (the reader
            # would sleep until the app's next keep-alive, 15 s): shutting it down does.
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                response.close()
            except Exception:  # noqa: BLE001 (closing from another thread may race its own close)
                pass

    # --- reading
    def _run(self) -> None:
        while not self._closed:
            if self._away.is_set():
                time.sleep(0.05)
                continue
            token = self._token()
            headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(self._last_id)} if token else {}
            try:
                with self._http.stream("GET", "/notifications/stream", headers=headers,
                                       timeout=httpx.Timeout(10.0, read=None)) as response:
                    if response.status_code != 200:
                        response.read()
                        raise httpx.HTTPStatusError("refused", request=response.request, response=response)
                    self._response = response
                    if not self._away.is_set():  # connected as away() began: hung up on at once
                        with self._changed:
                            self.connects += 1
                            self._changed.notify_all()  # away() waits for it
                        self._read(response)
            except (httpx.HTTPError, RuntimeError):  # dropped (the app restarting), refused, or closed
                pass
            finally:
                self._response = None
            if not self._closed:
                time.sleep(RETRY_S)

    def _read(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if self._closed or self._away.is_set():
                return
            if line:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
                continue
            if "data" in fields:
                self._told(fields)
            fields = {}

    def _told(self, fields: dict[str, str]) -> None:
        try:
            item = json.loads(fields["data"])
            last_id = int(fields.get("id") or item["id"])
        except (ValueError, KeyError):
            return
        kind, order_id = str(item.get("kind", "")), item.get("order_id")
        self.events += 1
        with self._changed:
            self._last_id = last_id
            self._delivered[last_id] = (kind, None if order_id is None else int(order_id))
            self._changed.notify_all()  # caught_up
            if not kind.startswith("order.") or order_id is None:
                return
            state = self._latest[int(order_id)] = kind[len("order."):].upper()
            if int(order_id) not in self._watchers:
                return
            self._seq += 1
            self._states.setdefault(int(order_id), []).append((self._seq, state))
