"""Ordinary escrow flows: release, refund, expiry, each dispute ruling, and a buyer whose notification
stream drops mid-trade."""

from __future__ import annotations

from harness.driver import Unsupported
from harness.scenario import Scenario
from harness.world import ADDRESSES


class ReleaseAfterDelivery(Scenario):
    name = "release_after_delivery"
    summary = "Courier confirms delivery, the buyer stays silent, the dispute window ends: the seller is paid."
    anchors = ("F40",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.log.info("seller1 ships with fastship")
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the courier reports delivery to the buyer's address")
        self.world.courier().deliver(self.tracking(order), ADDRESSES["buyer1"])
        self.settle_on(self.b, order, "DELIVERED")  # the adversaries try the delivered order (a seller confirming)
        self.log.info("the buyer stays silent while the 6-block dispute window passes")
        self.world.mine(6)
        self.settle_on(self.b, order, "RELEASED")


class BuyerConfirmsEarly(Scenario):
    name = "buyer_confirms_early"
    summary = "The buyer confirms receipt before any delivery event: immediate release."

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller("seller2")

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "slowpost", self.tracking(order))
        self.log.info("buyer2 confirms receipt")
        self.b.confirm(order["id"])
        self.settle_on(self.b, order, "RELEASED")


class ShipTimeoutRefund(Scenario):
    name = "ship_timeout_refund"
    summary = "The seller never ships; the ship window closes in blocks and the hold is cancelled."
    anchors = ("F17", "F18")

    def setup(self):
        self.b, self.s = self.buyer(), self.seller("seller2")

    def run(self):
        order = self.place(self.b, self.s)
        self.log.info("six blocks pass without shipment")
        self.world.mine(6)
        self.settle_on(self.b, order, "REFUNDED")


class UnpaidOrderExpires(Scenario):
    name = "unpaid_order_expires"
    summary = "The buyer never pays; the order expires and its invoice is cancelled."
    anchors = ("F6",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.order_unpaid(self.b, self.s)
        self.cx.expected_final[order["id"]] = {"EXPIRED"}
        self.settle_on(self.b, order, "AWAITING_FUNDS", timeout=5)  # the adversaries: no shipping unpaid (I9)
        self.log.info("the funding window passes in blocks")
        self.world.mine(6)
        self.settle_on(self.b, order, "EXPIRED")


class DeliveryTimeoutOpensDispute(Scenario):
    name = "delivery_timeout_opens_dispute"
    summary = "Shipped but never delivered: the order goes to dispute, never to a silent refund."
    anchors = ("F1", "F18", "F40")

    def setup(self):
        self.b, self.s, self.a = self.buyer(), self.seller(), self.arbiter()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("no delivery event arrives within the delivery window")
        self.world.mine(6)
        self.settle_on(self.b, order, "DISPUTED")
        self.log.info("the arbiter reads the tracking history and releases to the seller")
        self.a.rule(order["id"], "release")
        self.settle_on(self.b, order, "RELEASED")


class _Ruling(Scenario):
    """One ruling story in every escrow mode (``--mode``): the mode only changes how the
    buyer funds the order and how the ruled payout is carried out."""

    modes = ("ln_hold", "onchain_multisig", "custodial")
    ruling = ""
    share = None

    def setup(self):
        self.b = self.buyer("buyer2", bind=True)
        self.s, self.a = self.seller(), self.arbiter()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("buyer2 disputes: the item is not as described")
        self.b.dispute(order["id"], "not as described")
        self.world.market.dispute_message(self.s, order["id"], "it left here intact")
        self.log.info("blocks pass; the dispute freezes automatic release")
        self.world.mine(12)
        self.log.info("the arbiter rules: %s", self.ruling)
        self.a.rule(order["id"], self.ruling, self.share)
        self.outcome(self.b, order, {"release": "RELEASED", "refund": "REFUNDED", "split": "SPLIT"}[self.ruling])


class DisputeRulingRelease(_Ruling):
    name = "dispute_ruling_release"
    summary = "A dispute ruled for the seller: settle, then pay the seller once."
    ruling = "release"


class DisputeRulingRefund(_Ruling):
    name = "dispute_ruling_refund"
    summary = "A dispute ruled for the buyer before settlement: the hold is cancelled."
    ruling = "refund"
    anchors = ("F13",)

    def setup(self):
        self.b = self.buyer("buyer2")  # no payout node: a refund must not need one
        self.s, self.a = self.seller(), self.arbiter()


class DisputeRulingSplit(_Ruling):
    name = "dispute_ruling_split"
    summary = "A split ruling: settle, then pay both parties their shares from the hub."
    ruling = "split"
    anchors = ("F22",)

    def configure(self):
        self.share = self.rng.choice([25, 40, 50, 70])
        return super().configure()


class StreamResumesAfterDrop(Scenario):
    name = "notification_stream_resumes"
    summary = ("The buyer's notification stream drops while the seller ships and comes back with "
               "Last-Event-ID: it must still send the shipment, as the inbox shows it (I18).")

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        with self.world.market.stream_away(self.b):
            self.log.info("buyer2's notification stream drops; seller1 ships while it is away")
            self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the stream reconnects from the last notification it read; buyer2 confirms receipt")
        self.b.confirm(order["id"])
        self.settle_on(self.b, order, "RELEASED")


class WebhookEndpointDown(Scenario):
    name = "webhook_endpoint_down"
    summary = ("The buyer's webhook endpoint answers 503 while the seller ships, then comes back: the "
               "marketplace must try again until the shipment arrives, signed, as the inbox shows it (I18).")

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        if self.webhooks is None or not self.webhooks.watched(self.b.id):
            raise Unsupported("the marketplace sends no webhooks")
        # what buyer2 was told so far has arrived: what the endpoint turns away next is the shipment's
        self.webhooks.received(self.b.id, self.world.market.notifications(self.b))
        with self.webhooks.down(self.b.id):
            self.log.info("buyer2's webhook endpoint is down; seller1 ships")
            self.s.ship(order["id"], "fastship", self.tracking(order))
            if not self.webhooks.turned_away(self.b.id, 1, timeout=15):
                raise AssertionError("the marketplace never tried buyer2's webhook while it was down")
        self.log.info("the endpoint is back; buyer2 confirms receipt")
        self.b.confirm(order["id"])
        self.settle_on(self.b, order, "RELEASED")


SCENARIOS = [ReleaseAfterDelivery, BuyerConfirmsEarly, ShipTimeoutRefund, UnpaidOrderExpires,
             DeliveryTimeoutOpensDispute, DisputeRulingRelease, DisputeRulingRefund, DisputeRulingSplit,
             StreamResumesAfterDrop, WebhookEndpointDown]
