"""An escrow wakes the worker where it has something to carry out, on the real cluster: when
the buyer's confirm commits the release, and when the seller's payout ends. It used to wake it
twice more for nothing: when the node accepted the buyer's payment (FUNDED waits for the
seller), and after the drive that recorded the release (nothing was left to do)."""

from __future__ import annotations

import traceback

import pytest

from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_an_escrow_wakes_the_worker_at_its_confirm_and_its_payouts_end(market):
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
    assert sorted(woken) == ["_committed", "ended"], woken
    assert buyer.order(oid)["payouts"][0]["status"] == "SUCCEEDED"
