"""The reference app as its own process, as the harness starts it (``ReferenceMarketplace``)."""

from __future__ import annotations

import functools
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.http import ReferenceMarketplace
from harness.presets import SCENARIO_SETTINGS
from harness.world import World
from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_app_port_taken_before_it_binds_moves_to_another(cluster, tmp_path):
    # Another process (in CI: an lnd of a scenario lane starting beside this one) takes the
    # app's port after it was picked and before the app binds it: the app starts on another.
    world = World(cluster, tmp_path / "world")
    taken = world.market.port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        busy.listen()
        world.start_app({"password_hashing": "light"})
        try:
            assert world.market.port != taken
            assert world.market.http.get("/health").status_code == 200
            assert f"port {taken} on 127.0.0.1 is already in use" in (tmp_path / "world" / "app-1.log").read_text()
            assert world.admin.auth  # the admin logged in on the new port
        finally:
            world.stop_app()


class _OtherMarketplace(BaseHTTPRequestHandler):
    """Another app on the port: it answers /health as the reference app would, but it is not ours."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"status": "ok", "instance": "someone-else"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_another_app_answering_health_on_the_port_is_not_taken_for_ours(cluster, tmp_path):
    # Two launches were once handed one port: the second app's health check was answered by
    # the first before the second died of the clash, and its story ran on the wrong marketplace.
    world = World(cluster, tmp_path / "world")
    taken = world.market.port
    other = ThreadingHTTPServer(("127.0.0.1", taken), _OtherMarketplace)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        # (the app is stopped even when its start fails: on the old check the admin's login
        # went to the other server, and the app that started was left running)
        world.start_app({"password_hashing": "light"})
        assert world.market.port != taken
        assert world.market.http.get("/health").json()["instance"] != "someone-else"
        assert world.admin.auth
    finally:
        world.stop_app()
        other.shutdown()
        other.server_close()


def test_a_pushed_wait_wakes_on_the_notification_stream_and_survives_a_restart(cluster, tmp_path):
    """The pushed wait sleeps on the buyer's notification stream, which tells of the order from its
    first change on: it reads the order only for the view, once told; its fallback read is put an
    hour away, so only the stream can end these waits."""
    world = World(cluster, tmp_path / "world", functools.partial(ReferenceMarketplace, push_waits=True))
    world.market.FALLBACK_S = 3600.0
    world.start_app(SCENARIO_SETTINGS)
    try:
        buyer, seller = world.buyer("buyer1"), world.seller("seller1")
        listing = seller.list_item("pushed", 2_000)["id"]

        def waited(order_id: int, states: tuple[str, ...], view: bool, answer: dict) -> threading.Thread:
            thread = threading.Thread(target=lambda: answer.update(world.market.wait_order(
                buyer, order_id, states, timeout=120, view=view)), daemon=True)
            thread.start()
            return thread

        order = buyer.buy(listing)
        funded: dict = {}
        waiter = waited(order["id"], ("FUNDED",), False, funded)
        wait_for(lambda: world.market.feed(buyer).connects == 1, timeout=30, what="the buyer's stream")
        payment = buyer.pay(order)
        waiter.join(120)
        assert funded == {"id": order["id"], "state": "FUNDED"}  # told by the stream: no read after it

        # the app restarts (a crash fault would): the stream reconnects where it left off
        world.restart_app()
        world.market.login(buyer)
        released: dict = {}
        reads = world.market.order_reads
        waiter = waited(order["id"], ("RELEASED",), True, released)
        feed = world.market.feed(buyer)
        wait_for(lambda: order["id"] in feed._watchers, timeout=30, what="the wait to watch the order")
        seller.ship(order["id"], "fastship", "TRK-PUSHED")
        buyer.confirm(order["id"])
        waiter.join(120)
        assert released.get("state") == "RELEASED" and released["id"] == order["id"], released
        assert world.market.order_reads == reads + 1  # the view, once told; nothing before
        assert world.market.feed(buyer).connects >= 2
        payment.join(60)
    finally:
        world.stop_app()
    assert not any(t.name.startswith("feed-") for t in threading.enumerate())  # closed with the driver
