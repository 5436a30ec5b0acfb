"""The reference app as its own process, as the harness starts it (``ReferenceMarketplace``)."""

from __future__ import annotations

import socket

import pytest

from harness.world import World

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
