"""The worker follows the chain through the hub's block stream, on the real cluster: idle, it asks
the hub nothing for the height (it asked GetInfo on every clock tick, five times a second), and a
block mined brings it to the new height without a question (the block wakes it)."""

from __future__ import annotations

import time

import pytest

from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_an_idle_worker_asks_no_height_and_a_block_brings_it_to_the_new_height_unasked(market):
    worker, ctx = market.worker, market.ctx
    wait_for(lambda: ctx.tip_pushed, timeout=10, what="the hub's block stream to push the tip")
    assert market.http.get("/health").json()["node"]["height_pushed"] is True  # what an operator sees
    asked = ctx.hub.calls_by_method.get("GetInfo", 0)
    ticks, tick = [], worker.tick
    worker.tick = lambda fresh_height=True: (ticks.append(fresh_height), tick(fresh_height))[1]
    time.sleep(10 * worker.interval)
    assert ticks.count(True) >= 5  # the clock ticked
    assert ctx.hub.calls_by_method.get("GetInfo", 0) == asked

    height = market.cluster.mine(1)  # (not market.mine, which wakes the worker itself)
    wait_for(lambda: worker.height == height, timeout=10, what=f"the worker at height {height}")
    assert ctx.tip() == height
    assert ctx.hub.calls_by_method.get("GetInfo", 0) == asked
