"""The harness's reader of a party's notification stream (harness/sse.py) and the reference
driver's pushed wait (harness/http.py), with no app and no nodes: streams served by an httpx mock
transport, and for the close a real loopback socket."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import pytest

from harness.driver import Marketplace, Unsupported
from harness.http import HttpMarketplace
from harness.sse import OrderFeed
from regtest_cluster.waiting import WaitTimeout, wait_for


class Streams:
    """Serves ``GET /notifications/stream``: each connection yields the events put on ``events``
    until a ``None`` ends it; remembers each connection's ``Last-Event-ID``."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.last_ids: list[str] = []
        self._id = 0

    def tell(self, order_id: int, state: str) -> None:
        self._id += 1
        item = {"id": self._id, "kind": f"order.{state.lower()}", "order_id": order_id}
        self.events.put(f"id: {self._id}\ndata: {json.dumps(item)}\n\n".encode())

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.last_ids.append(request.headers.get("Last-Event-ID", ""))

        def body():
            while (chunk := self.events.get()) is not None:
                yield chunk

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


@pytest.fixture
def served():
    streams = Streams()
    http = httpx.Client(base_url="http://market.test", transport=httpx.MockTransport(streams.handler))
    feed = OrderFeed(http, lambda: "token", "buyer", after=40)
    try:
        wait_for(lambda: feed.connects == 1, timeout=10, what="the feed's connection")
        yield streams, feed
    finally:
        streams.events.put(None)
        feed.close()
        http.close()


def _told(feed: OrderFeed, events: int) -> None:
    wait_for(lambda: feed.events >= events, timeout=10, what=f"{events} events read")


def test_two_waits_on_one_order_both_see_what_was_told(served):
    """The first wait to finish does not take the order's told states from the second."""
    streams, feed = served
    with feed.watching(7):
        after = feed.mark()
        with feed.watching(7):
            streams.tell(7, "FUNDED")
            assert feed.wait(7, ("FUNDED",), after, timeout=10) == "FUNDED"
        assert feed.wait(7, ("FUNDED",), after, timeout=0.1) == "FUNDED"
        assert feed.wait(7, ("RELEASED",), after, timeout=0.1) is None
    assert feed._states == {} and feed._watchers == {}  # dropped when the last wait left


def test_what_is_told_of_an_order_nobody_watches_is_not_kept(served):
    streams, feed = served
    streams.tell(8, "FUNDED")
    _told(feed, 1)
    assert feed._states == {}
    with feed.watching(8):  # watched from here on: only news counts
        after = feed.mark()
        assert feed.wait(8, ("FUNDED",), after, timeout=0.1) is None
        streams.tell(8, "SHIPPED")
        assert feed.wait(8, ("SHIPPED", "FUNDED"), after, timeout=10) == "SHIPPED"


def test_a_dropped_stream_reconnects_after_the_last_event_it_read(served):
    streams, feed = served
    streams.tell(9, "FUNDED")
    _told(feed, 1)
    streams.events.put(None)  # the app drops the stream (a restart)
    wait_for(lambda: feed.connects == 2, timeout=10, what="the reconnection")
    assert streams.last_ids == ["40", "1"]
    with feed.watching(9):
        after = feed.mark()
        streams.tell(9, "RELEASED")
        assert feed.wait(9, ("RELEASED",), after, timeout=10) == "RELEASED"


def test_a_closed_feed_lets_its_waits_run_out(served):
    streams, feed = served
    streams.events.put(None)
    feed.close()
    with feed.watching(3):
        assert feed.wait(3, ("FUNDED",), feed.mark(), timeout=0.2) is None


def test_closing_wakes_a_reader_blocked_on_a_quiet_stream():
    """A real socket on loopback whose server never writes after the headers: closing the feed
    must stop its reader at once. Closing the response alone left the reader blocked in recv until
    the app's next keep-alive (15 s), so a scenario's teardown waited 5 s a party."""
    class Quiet(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.flush()
            released.wait(30)

        def log_message(self, *args):
            pass

    released = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}")
    feed = OrderFeed(http, lambda: "token", "quiet")
    try:
        wait_for(lambda: feed.connects == 1, timeout=10, what="the feed's connection")
        feed.close()
        assert not feed._thread.is_alive()
    finally:
        released.set()
        server.shutdown()
        server.server_close()
        http.close()


def test_a_pushed_wait_of_a_party_the_app_does_not_tell_asks_instead(monkeypatch):
    """The app tells an order's changes to its buyer and seller only: the admin's or an arbiter's
    pushed wait would sleep out the 2 s fallback before each read, so it polls instead."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/me/notifications":
            return httpx.Response(200, json={"items": [], "total": 0})
        if request.url.path == "/orders/5":
            return httpx.Response(200, json={"id": 5, "state": "DISPUTED", "buyer_id": 1, "seller_id": 2})
        return httpx.Response(200, content=b"retry: 2000\n\n")  # a stream that tells nothing, and ends

    polled = []
    monkeypatch.setattr(Marketplace, "wait_order",
                        lambda self, party, order_id, states, timeout=30, view=True:
                        polled.append((order_id, states, timeout)) or {"id": order_id, "state": "polled"})
    market = HttpMarketplace(httpx.Client(base_url="http://market.test", transport=httpx.MockTransport(handler)),
                             push_waits=True)
    try:
        arbiter, buyer = SimpleNamespace(id=9, auth="t", name="arbiter"), SimpleNamespace(id=1, auth="t", name="b")
        assert market.wait_order(arbiter, 5, ("SPLIT",), timeout=20)["state"] == "polled"
        assert polled and polled[0][:2] == (5, ("SPLIT",)) and 0 < polled[0][2] <= 20
        with pytest.raises(WaitTimeout):  # the buyer is told: it waits on its stream, here in vain
            market.wait_order(buyer, 5, ("SPLIT",), timeout=0.3)
        assert len(polled) == 1
    finally:
        market.close()


def test_a_pushed_wait_that_only_the_fallback_read_ends_is_counted(monkeypatch):
    """The order reaches the state and the party's stream never says so (a lost notification):
    the wait still ends, on its fallback read, and ``unpushed_waits`` counts it. A wait whose
    first read already finds the state counts nothing."""
    reads = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/me/notifications":
            return httpx.Response(200, json={"items": [], "total": 0})
        if request.url.path == "/orders/5":
            reads.append(1)
            state = "AWAITING_FUNDS" if len(reads) == 1 else "FUNDED"
            return httpx.Response(200, json={"id": 5, "state": state, "buyer_id": 1, "seller_id": 2})
        return httpx.Response(200, content=b"retry: 2000\n\n")  # a stream that tells nothing

    market = HttpMarketplace(httpx.Client(base_url="http://market.test", transport=httpx.MockTransport(handler)),
                             push_waits=True)
    monkeypatch.setattr(market, "FALLBACK_S", 0.1)
    try:
        buyer = SimpleNamespace(id=1, auth="t", name="b")
        assert market.wait_order(buyer, 5, ("FUNDED",), timeout=10, view=False)["state"] == "FUNDED"
        assert len(reads) == 2 and market.unpushed_waits == 1
        assert market.wait_order(buyer, 5, ("FUNDED",), timeout=10, view=False)["state"] == "FUNDED"
        assert len(reads) == 3 and market.unpushed_waits == 1
    finally:
        market.close()


def test_every_event_the_stream_sent_is_recorded_watched_or_not(served):
    """The oracle judges what the stream sent (I18), so the feed keeps every event: orders nobody
    waits for and notifications of other kinds too."""
    streams, feed = served
    streams._id = 40  # the feed started after notification 40
    assert not feed.caught_up(41, 0.05)
    streams.tell(9, "FUNDED")
    streams._id += 1
    streams.events.put(f"id: {streams._id}\ndata: {json.dumps({'id': streams._id, 'kind': 'message.new'})}\n\n"
                       .encode())
    assert feed.caught_up(42, 10)
    assert feed.delivered() == {41: ("order.funded", 9), 42: ("message.new", None)}
    assert feed.after == 40 and feed._states == {}  # what the waits keep is unchanged


def test_away_cuts_the_stream_until_it_ends_and_then_resumes_after_the_last_event_read(served):
    streams, feed = served
    streams.tell(9, "FUNDED")
    _told(feed, 1)
    with feed.away():
        streams.events.put(None)  # this connection ends (the mock cannot be hung up on from here)
        streams.tell(9, "SHIPPED")  # written while away
        time.sleep(0.3)
        assert feed.connects == 1 and feed.delivered() == {1: ("order.funded", 9)}
    assert feed.caught_up(2, 10)
    assert feed.connects == 2 and streams.last_ids == ["40", "1"]
    assert feed.delivered() == {1: ("order.funded", 9), 2: ("order.shipped", 9)}


def test_the_driver_reports_what_a_watched_party_s_stream_sent_and_only_theirs():
    served_events = [b"retry: 2000\n\n",
                     b'id: 12\ndata: {"id": 12, "kind": "order.funded", "order_id": 5}\n\n']

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/me/notifications":
            return httpx.Response(200, json={"items": [{"id": 11}], "total": 1})
        return httpx.Response(200, content=b"".join(served_events))  # then the stream ends

    market = HttpMarketplace(httpx.Client(base_url="http://market.test", transport=httpx.MockTransport(handler)))
    try:
        buyer, seller = SimpleNamespace(id=1, auth="t", name="b"), SimpleNamespace(id=2, auth="t", name="s")
        market.watch(buyer)
        streamed = market.streamed(buyer, upto=12, grace=10)
        assert streamed.after == 11 and streamed.delivered == {12: ("order.funded", 5)}
        assert market.streamed(seller, upto=12) is None  # never watched
    finally:
        market.close()


def test_a_driver_without_a_stream_says_so():
    market = Marketplace(None, None)
    party = SimpleNamespace(id=1)
    with pytest.raises(Unsupported):
        market.watch(party)
    with pytest.raises(Unsupported):
        market.stream_away(party)
    assert market.streamed(party, upto=5) is None


def test_a_pushed_wait_on_an_order_the_stream_told_of_reads_it_only_for_its_view():
    """Once the stream has told of an order, it knows the order from its first change: a wait
    for a state it told last, or tells next, asks for nothing (``view=False``); a wait for the
    view reads it once. An order it never told of is read first, as its changes may predate it,
    unless it was placed while the stream was open."""
    streams, reads, states = Streams(), [], {5: "FUNDED", 6: "FUNDED"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/me/notifications":
            return httpx.Response(200, json={"items": [], "total": 0})
        if request.url.path == "/orders":
            return httpx.Response(201, json={"id": 7, "state": "AWAITING_FUNDS", "buyer_id": 1, "seller_id": 2})
        if request.url.path.startswith("/orders/"):
            order_id = int(request.url.path.rsplit("/", 1)[1])
            reads.append(order_id)
            return httpx.Response(200, json={"id": order_id, "state": states[order_id], "buyer_id": 1,
                                             "seller_id": 2})
        return streams.handler(request)

    market = HttpMarketplace(httpx.Client(base_url="http://market.test", transport=httpx.MockTransport(handler)),
                             push_waits=True)
    try:
        buyer = SimpleNamespace(id=1, auth="t", name="b")
        feed = market.feed(buyer)
        streams.tell(5, "AWAITING_FUNDS")
        streams.tell(5, "FUNDED")
        wait_for(lambda: feed.latest(5) == "FUNDED", timeout=10, what="the stream's news")
        assert market.wait_order(buyer, 5, ("FUNDED",), timeout=10, view=False) == {"id": 5, "state": "FUNDED"}
        states[5] = "RELEASED"
        threading.Timer(0.2, streams.tell, (5, "RELEASED")).start()
        assert market.wait_order(buyer, 5, ("RELEASED",), timeout=10, view=False) == {"id": 5, "state": "RELEASED"}
        assert reads == [] and market.unpushed_waits == 0
        assert market.wait_order(buyer, 5, ("RELEASED",), timeout=10)["state"] == "RELEASED"
        assert reads == [5]  # the view was wanted: read once
        assert market.wait_order(buyer, 6, ("FUNDED",), timeout=10, view=False)["state"] == "FUNDED"
        assert reads == [5, 6]  # never told of: asked first
        assert market.place_order(buyer, 3)["id"] == 7  # placed while the stream is open: it will tell
        threading.Timer(0.2, streams.tell, (7, "FUNDED")).start()
        assert market.wait_order(buyer, 7, ("FUNDED",), timeout=10, view=False) == {"id": 7, "state": "FUNDED"}
        assert reads == [5, 6]
    finally:
        streams.events.put(None)
        market.close()
