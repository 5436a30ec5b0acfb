"""Time against the lock: the guardian, a worker that was down, an operator who left."""

from __future__ import annotations

from harness.scenario import Scenario

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


SCENARIOS = [GuardianCustodyForDisputed, GuardianCancelWorkerDown, OperatorGone]
