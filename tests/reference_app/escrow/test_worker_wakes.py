"""An escrow wakes the worker nowhere, on the real cluster: the buyer's confirm, which commits the
release, carries the order on itself as a pass of the worker's (Worker.carry_on), and so does the
seller's payout's end, which records the release. The confirm used to wake the worker, whose tick
selected the pending orders to find it; and the escrow used to wake it three times more: when the
node accepted the buyer's payment (FUNDED waits for the seller), after the drive that recorded the
release (nothing was left to do), and at the payout's end."""

from __future__ import annotations

import traceback

import pytest

from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_an_escrow_s_confirm_and_its_payout_s_end_carry_it_on_and_wake_the_worker_never(market):
    worker, ctx = market.worker, market.ctx
    woken: list[str] = []
    wake = worker.wake

    def counted() -> None:
        woken.append(traceback.extract_stack(limit=2)[0].name)  # who woke it
        wake()

    # every way in: its own calls, the modes' and the payouts' (each kept a reference at start)
    worker.wake = ctx.wake_worker = counted
    for mode in ctx.modes.values():
        mode.wake = counted
    carried: list[int] = []
    carry_on = worker.carry_on
    worker.carry_on = ctx.carry_on = lambda order_id, step: (carried.append(order_id), carry_on(order_id, step))
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, 21_000)
    oid = order["id"]
    wait_for(lambda: not worker._driving, timeout=10, what="the worker idle")
    funded = list(woken)
    seller.ship(oid, "fastship", f"FS-{oid}-wakes")
    buyer.confirm(oid)
    buyer.wait_state(oid, "RELEASED")
    wait_for(lambda: not worker._driving, timeout=10, what="the release's drive to end")

    assert funded == [], funded
    assert woken == [], woken
    assert carried == [oid, oid]  # the confirm's commit, then the payout's end
    assert buyer.order(oid)["payouts"][0]["status"] == "SUCCEEDED"
