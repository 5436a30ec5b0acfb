"""An escrow wakes the worker where it has something to carry out, on the real cluster: when
the buyer's confirm commits the release. The seller's payout's end wakes it no more: it carries
the order on itself (Worker.carry_on), and the release is recorded there. The escrow used to wake
it three times more: when the node accepted the buyer's payment (FUNDED waits for the seller),
after the drive that recorded the release (nothing was left to do), and at the payout's end."""

from __future__ import annotations

import traceback

import pytest

from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_an_escrow_wakes_the_worker_at_its_confirm_and_its_payout_s_end_carries_it_on(market):
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
    carry_on = ctx.carry_on
    ctx.carry_on = lambda order_id, step: (carried.append(order_id), carry_on(order_id, step))
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
    assert woken == ["_committed"], woken
    assert carried == [oid]
    assert buyer.order(oid)["payouts"][0]["status"] == "SUCCEEDED"
