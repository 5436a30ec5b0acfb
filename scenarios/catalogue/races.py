"""Races between a party's action and a deadline that falls due in the same block.

A marketplace selects the orders whose deadline passed, then claims them one by one.
An action can land in between: the seller ships in the block the ship window
closes, the buyer disputes in the block the delivery window closes. The order must
then end as that action made it (or as the deadline made it, if the deadline came
first), never pushed on by the *new* state's timeout in the same block.

To make the window between selection and claim wide enough to land in, a crowd
of unpaid orders expires in the same block, ahead of the raced order: each expiry
costs the marketplace a node call (cancelling the invoice). The action is sent as
soon as the first of them has expired, that is, once the due orders were selected.
Each expiry now takes the reference marketplace about 7 ms, so thirty of them left a
0.2 s window, which the client missed when the catalogue ran four lanes on two cores
(the planted ``stale_deadline`` then went unexercised); a hundred and twenty leave
about 0.8 s.
"""

from __future__ import annotations

import time

from escrow_protocol.actions import Action
from harness.scenario import Scenario

CROWD = 120         # unpaid orders expiring in the raced order's deadline block
WINDOW = 6          # blocks: the funding, ship and delivery windows alike (see settings)


class _DeadlineRace(Scenario):
    settings = {"funding_timeout_blocks": WINDOW, "ship_window_blocks": WINDOW, "delivery_window_blocks": WINDOW}

    def setup(self):
        self.b, self.s, self.a = self.buyer(), self.seller(), self.arbiter()

    def crowd(self) -> list[dict]:
        """Unpaid orders placed now, so they expire ``WINDOW`` blocks from now, before the
        raced order (placed after them) in the marketplace's queue."""
        listing = self.s.list_item(f"crowd-{self.rng.randrange(10**6)}", self.price(), stock=CROWD)
        crowd = []
        for _ in range(CROWD):
            order = self.b.buy(listing["id"])
            self.orders.append(order["id"])
            self.holds.append(order["hold"]["payment_hash"])
            self.cx.expected_final[order["id"]] = {"EXPIRED"}
            crowd.append(order)
        return crowd

    def first_expired(self, crowd: list[dict], timeout: float = 30) -> bool:
        """Poll (tightly: the race is on) until the first of the crowd has expired."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.b.order(crowd[0]["id"])["state"] == "EXPIRED":
                return True
            time.sleep(0.005)
        return False

    def deadline_block(self, crowd: list[dict]) -> None:
        self.log.info("mining the %s blocks to the deadline block of order %s and of the %s unpaid orders",
                      WINDOW, self.raced["id"], CROWD)
        self.world.mine(WINDOW)
        if not self.first_expired(crowd):
            self.log.info("the unpaid orders did not expire: the marketplace ignored the deadline")

    def crowd_done(self, crowd: list[dict]) -> None:
        self.settle_on(self.b, crowd[-1], "EXPIRED")  # claimed just before the raced order


class ShipAtShipDeadline(_DeadlineRace):
    name = "ship_at_ship_deadline"
    summary = ("The seller ships in the block the ship window closes: the order is shipped and later "
               "released (or refunded, if the deadline came first), never disputed by the shipped state's "
               "delivery timeout in the block it shipped.")

    def run(self):
        crowd = self.crowd()
        self.raced = order = self.place(self.b, self.s)
        self.deadline_block(crowd)
        self.log.info("seller1 ships order %s in the block its ship window closes", order["id"])
        shipped = self.s.act(Action.SHIP, order["id"], courier="fastship", tracking=self.tracking(order))
        if not shipped.ok:
            self.log.info("refused (%s %s): the ship deadline came first, so the buyer is refunded",
                          shipped.status, shipped.code)
            self.cx.expected_final[order["id"]] = {"REFUNDED"}
            self.crowd_done(crowd)
            self.settle_on(self.b, order, "REFUNDED")
            return
        self.cx.expected_final[order["id"]] = {"RELEASED"}  # shipped: only the buyer's confirmation ends it
        self.crowd_done(crowd)
        self.log.info("a block later the buyer has the item and confirms")
        self.world.mine(1)
        confirmed = self.b.act(Action.CONFIRM, order["id"])
        if not confirmed.ok:
            self.log.info("confirmation refused (%s %s): the order is %s", confirmed.status, confirmed.code,
                          self.b.order(order["id"])["state"])
            return
        self.settle_on(self.b, order, "RELEASED")


class DisputeAtDeliveryDeadline(_DeadlineRace):
    name = "dispute_at_delivery_deadline"
    summary = ("The buyer disputes in the block the delivery window closes: the dispute stays with the "
               "arbiter, whose refund cancels the hold; it is not settled into custody long before the "
               "lock horizon.")

    def run(self):
        crowd = self.crowd()
        self.raced = order = self.place(self.b, self.s)
        self.log.info("seller1 ships order %s at once: its delivery window closes with the crowd's", order["id"])
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.deadline_block(crowd)
        self.log.info("buyer1 disputes in the block the delivery window closes")
        disputed = self.b.act(Action.DISPUTE, order["id"], reason="never arrived")
        if not disputed.ok:
            self.log.info("refused (%s %s): the delivery deadline came first and opened the dispute",
                          disputed.status, disputed.code)
        # Either way the order is in dispute; the buyer has no payout node, so a refund must
        # be a cancelled hold: only custody (a settled hold) would need one.
        self.cx.expected_final[order["id"]] = {"REFUNDED"}
        self.crowd_done(crowd)
        self.log.info("a block later the arbiter rules for the buyer")
        self.world.mine(1)
        self.a.rule(order["id"], "refund")
        self.settle_on(self.b, order, "REFUNDED", timeout=20)


SCENARIOS = [ShipAtShipDeadline, DisputeAtDeliveryDeadline]
