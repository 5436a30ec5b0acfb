"""The worker's pass over a release reads the order's row once, on the real cluster.

A pass over a RELEASE_PENDING order read the order again where it recorded the settled hold,
where it tried the payout (for the order's fee) and where it recorded the release: up to three
reads of one row in a pass, each loaded into the ORM. The pass now reads it once and hands it on;
the release's compare-and-swap checks that its state and version still hold."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from reference_app.store.models import Payout
from regtest_cluster.waiting import wait_for
from tests.helpers import record_statements

pytestmark = pytest.mark.cluster

ORDER_READ = re.compile(r"^\s*SELECT\b.*\bFROM orders\b", re.IGNORECASE | re.DOTALL)
PAYOUTS_READ = re.compile(r"^\s*SELECT\b.*\bFROM payouts\b", re.IGNORECASE | re.DOTALL)


def test_a_pass_over_a_release_reads_the_order_once(market, monkeypatch):
    buyer, seller = market.buyer(), market.seller()
    order = market.funded_order(buyer, seller, 20_000)
    oid = order["id"]
    market.worker.stop()  # the passes below are the only ones
    seller.ship(oid, "fastship", f"FS-{oid}-reads")
    buyer.confirm(oid)
    mode, height = market.ctx.modes["ln_hold"], market.ctx.tip()
    seen = record_statements(market.ctx.db, monkeypatch, this_thread=True)  # not the payment's end

    first = mode.drive(oid, height)  # settles the hold and starts the seller's payout
    settle_and_pay = list(seen)
    wait_for(lambda: payout_status(market, oid) == "SUCCEEDED", timeout=30, what="the seller's payout")
    seen.clear()
    second = mode.drive(oid, height)  # records the release

    assert (first, second) == ("RELEASE_PENDING", "RELEASED")
    assert (order_reads(settle_and_pay), order_reads(seen)) == (1, 1), (settle_and_pay, seen)
    assert buyer.order(oid)["payouts"][0]["status"] == "SUCCEEDED"


def test_a_payout_s_end_records_the_release_on_the_record_its_pass_read(market, monkeypatch):
    """Once the seller's payout SUCCEEDED, its end carries the order on at once (ctx.carry_on; the
    worker runs the step on its drive pool, this test on the calling thread): the release is
    recorded on the record the pass that sent the payout read, and neither the order nor its
    payouts are read again (the step knows the one payout it needs SUCCEEDED); nothing waits
    for the worker's next pass."""
    buyer, seller = market.buyer(), market.seller()
    oid = market.funded_order(buyer, seller, 20_000)["id"]
    market.worker.stop()  # no pass but the one below, and what the payout's end carries on
    seller.ship(oid, "fastship", f"FS-{oid}-carry")
    buyer.confirm(oid)
    mode, height = market.ctx.modes["ln_hold"], market.ctx.tip()
    carried = []
    monkeypatch.setattr(market.ctx, "carry_on", lambda order_id, step: carried.append((order_id, step(height))))
    seen = record_statements(market.ctx.db, monkeypatch)  # every thread's

    assert mode.drive(oid, height) == "RELEASE_PENDING"  # settles the hold and starts the seller's payout
    first_pass = len(seen)
    wait_for(lambda: carried, timeout=30, what="the seller's payout to end")

    assert carried == [(oid, "RELEASED")]
    assert order_reads(seen[:first_pass]) == 1 and order_reads(seen[first_pass:]) == 0, seen
    assert [s for s in seen[first_pass:] if PAYOUTS_READ.match(s)] == [], seen[first_pass:]
    view = buyer.order(oid)
    assert view["state"] == "RELEASED" and view["payouts"][0]["status"] == "SUCCEEDED"


def payout_status(market, order_id: int) -> str | None:
    with market.ctx.db.session(write=False) as session:
        return session.scalar(select(Payout.status).where(Payout.order_id == order_id))


def order_reads(statements: list[str]) -> int:
    return sum(1 for s in statements if ORDER_READ.match(s))
