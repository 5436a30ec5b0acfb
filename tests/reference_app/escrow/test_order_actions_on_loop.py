"""A seller's ship and a buyer's confirm touch nothing but the database, so on SQLite they run on
the event loop (``routing.database_only``): no worker-thread hop each. The chain height they
record is the hub's, read before the request's writer begins (``deps.chain_tip``), never by a
node call inside the transaction. Where writers do not queue at the gate (the planted skip_cas
bug, which sleeps between its check and its write), they keep their worker thread."""

from __future__ import annotations

import threading

import pytest

from reference_app.services import orders
from tests.reference_app.escrow.conftest import open_market
from tests.reference_app.test_database_only import _on_event_loop

pytestmark = pytest.mark.cluster


def _record(monkeypatch, market) -> list[tuple[str, bool, bool]]:
    """(action, on the event loop, the action's own thread asked the hub for the height)."""
    seen: list[tuple[str, bool, bool]] = []
    hub = market.ctx.hub
    asked: list[int] = []  # the threads that asked (the worker asks at each tick, in its own)
    real_height = hub.height

    def height() -> int:
        asked.append(threading.get_ident())
        return real_height()
    monkeypatch.setattr(hub, "height", height)
    for name in ("ship", "confirm"):
        def recording(*args, _real=getattr(orders, name), _name=name, **kwargs):
            before = len(asked)
            market.ctx._tip = None  # an old cache would send the action itself to the hub
            try:
                return _real(*args, **kwargs)
            finally:
                seen.append((_name, _on_event_loop(), threading.get_ident() in asked[before:]))
        monkeypatch.setattr(orders, name, recording)
    return seen


def _escrow(market) -> dict:
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, 21_000)
    oid = order["id"]
    seller.ship(oid, "fastship", f"FS-{oid}-loop")
    buyer.confirm(oid)
    buyer.wait_state(oid, "RELEASED")
    return {e["event"]: e["height"] for e in buyer.call("GET", f"/orders/{oid}/events")}


def test_ship_and_confirm_run_on_the_event_loop_with_the_hub_s_height(market, monkeypatch):
    seen = _record(monkeypatch, market)
    height = market.ctx.hub.height()
    events = _escrow(market)
    on_loop = market.ctx.db.single_writer  # on PostgreSQL every statement may wait: a thread
    assert seen == [("ship", on_loop, False), ("confirm", on_loop, False)], seen
    assert events["ship"] == events["buyer_confirm"] == height, events


def test_with_the_planted_skip_cas_they_keep_their_thread(cluster, tmp_path, monkeypatch):
    with open_market(cluster, tmp_path, planted_bug="skip_cas") as market:
        seen = _record(monkeypatch, market)
        _escrow(market)
        assert seen == [("ship", False, False), ("confirm", False, False)], seen
