"""Time against the lock and the trade windows: the guardian, a worker that was down, an
operator who left, a dispute in the last block of its window."""

from __future__ import annotations

import time

from escrow_protocol.actions import Action
from harness.scenario import Scenario
from harness.world import ADDRESSES

HOLD_EXPIRY_DELTA = 18


def horizon(order: dict, margin: int = 24) -> int:
    return order["hold"]["htlc_expiry_height"] - HOLD_EXPIRY_DELTA - margin


class GuardianCustodyForDisputed(Scenario):
    name = "guardian_custody_for_disputed"
    summary = "A dispute outlasts the lock: the guardian settles into custody; the ruling refunds from custody."
    anchors = ("F1", "F3", "F5")

    def setup(self):
        self.b = self.buyer("buyer2", bind=True)
        self.s, self.a = self.seller(), self.arbiter()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.b.dispute(order["id"], "never arrived")
        self.log.info("the dispute drags on: mining to the guardian's horizon at height %s", horizon(order))
        self.world.mine_to(horizon(order))
        custody = self.settle_on(self.b, order, "HELD_IN_CUSTODY", timeout=20)
        self.log.info("blocks keep coming, up to where LND would cancel the hold itself")
        self.world.mine(24)
        if custody["state"] == "HELD_IN_CUSTODY":
            self.log.info("the arbiter refunds the buyer from custody")
            self.a.rule(order["id"], "refund")
        self.settle_on(self.b, order, "REFUNDED")


class GuardianCancelWorkerDown(Scenario):
    name = "guardian_cancel_worker_down"
    summary = "The marketplace is down while blocks pass; on restart the guardian refunds the unshipped order."
    anchors = ("F1", "F14")

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.log.info("the marketplace goes down")
        self.world.market.stop()
        self.log.info("mining to the guardian's horizon while nobody watches")
        self.world.mine_to(horizon(order))
        self.log.info("the marketplace comes back and reconciles")
        self.world.restart_app()
        self.settle_on(self.b, order, "REFUNDED")


class OperatorGone(Scenario):
    name = "operator_gone"
    summary = "The operator disappears for good: LND cancels the held HTLC and the buyer's funds come back."
    anchors = ("F39",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.cx.operator_gone = True
        self.log.info("the marketplace stops for good")
        self.world.market.stop()
        self.log.info("blocks pass the hold's expiry; LND fails the HTLC back to the buyer")
        self.world.mine_to(order["hold"]["htlc_expiry_height"] - HOLD_EXPIRY_DELTA + 1)
        self.payments[order["id"]].join(60)
        self.log.info("buyer1's node reports its payment %s", self.payments[order["id"]].outcome.get("status"))
        self.world.restart_app()  # an auditor's look afterwards: the app reconciles with LND
        self.settle_on(self.b, order, "REFUNDED")


class DisputeInWindowLastBlock(Scenario):
    name = "dispute_in_window_last_block"
    summary = ("The buyer disputes in the last block of the dispute window (delivery height + window - 1): "
               "the window is still open, the dispute stands, and the arbiter's refund cancels the hold.")
    anchors = ("F40",)

    def setup(self):
        self.b, self.s, self.a = self.buyer(), self.seller(), self.arbiter()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the courier reports delivery to the buyer's address")
        self.world.courier().deliver(self.tracking(order), ADDRESSES["buyer1"])
        self.settle_on(self.b, order, "DELIVERED")
        entered = max(e["height"] for e in self.world.market.timeline(self.world.admin, order["id"])
                      if e["to_state"] == "DELIVERED")
        window = int(self.cx.settings["dispute_window_blocks"])
        self.log.info("delivered at height %s: mining to %s, the last block of the %s-block dispute window",
                      entered, entered + window - 1, window)
        self.world.mine_to(entered + window - 1)
        time.sleep(1.5)  # the worker takes its passes at this height (it polls every 0.1 s here)
        self.cx.expected_final[order["id"]] = {"REFUNDED"}
        self.log.info("buyer1 opens the box, finds it empty and disputes in the window's last block")
        disputed = self.b.act(Action.DISPUTE, order["id"], reason="the box was empty")
        if not disputed.ok:
            self.log.info("refused (%s %s): the window closed early; the order is %s", disputed.status,
                          disputed.code, self.b.order(order["id"])["state"])
            self.settle_on(self.b, order, "RELEASED")
            return
        self.log.info("the arbiter rules for the buyer")
        self.a.rule(order["id"], "refund")
        self.settle_on(self.b, order, "REFUNDED")


SCENARIOS = [GuardianCustodyForDisputed, GuardianCancelWorkerDown, OperatorGone, DisputeInWindowLastBlock]
