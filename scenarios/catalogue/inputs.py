"""Hostile or wrong input aimed at a live escrow."""

from __future__ import annotations

from harness.scenario import Scenario
from harness.world import ADDRESSES
from regtest_cluster.nodes.wallet import wallet


class ForgedWebhook(Scenario):
    name = "forged_webhook"
    summary = "A forged 'delivered' webhook (wrong key) is refused; the escrow waits for real evidence."
    anchors = ("F40",)
    settings = {"delivery_window_blocks": 12}

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.cx.forged_evidence.add(order["id"])
        self.log.info("someone posts a 'delivered' event signed with a guessed key")
        r = self.world.courier().event(self.tracking(order), "delivered", ADDRESSES["buyer1"], secret="guessed-key")
        self.log.info("the marketplace answers %s", r.status_code)
        self.log.info("the dispute window would pass now, if the forgery had counted")
        self.world.mine(6)
        self.settle_on(self.b, order, "DELIVERED", "RELEASED", timeout=3)
        self.log.info("the buyer, who has the parcel, confirms")
        if self.b.order(order["id"])["state"] == "SHIPPED":
            self.b.confirm(order["id"])
        self.settle_on(self.b, order, "RELEASED")


class ReplayedWebhook(Scenario):
    name = "replayed_webhook"
    summary = "A captured courier event is replayed: refused as a replay, nothing changes."

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        courier = self.world.courier()
        event_id = f"evt-{self.rng.randrange(10**9)}"
        first = courier.event(self.tracking(order), "in_transit", ADDRESSES["buyer2"], event_id=event_id)
        again = courier.event(self.tracking(order), "in_transit", ADDRESSES["buyer2"], event_id=event_id)
        self.log.info("first delivery of the event: %s; the replay: %s", first.status_code, again.status_code)
        self.cx.race_results.append([first.status_code, again.status_code])
        courier.deliver(self.tracking(order), ADDRESSES["buyer2"])
        self.world.mine(6)
        self.settle_on(self.b, order, "RELEASED")


class _BadPayoutInvoice(Scenario):
    """A seller without a bound node hands in a payout invoice with one field wrong: it must be
    refused, and a proper one for the amount due paid instead."""

    anchors = ("F29",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller("seller2", bind=False)

    def bad_invoice(self, node, order: dict, due: int) -> dict:
        raise NotImplementedError

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.b.confirm(order["id"])
        due = order["price_sats"] - order["fee_sats"]
        node = wallet(self.world.cluster.node("seller2"))  # LND or LDK alike
        bad = self.bad_invoice(node, order, due)
        r = self.s.act("payout_invoice", order["id"], payment_request=bad["payment_request"])
        self.log.info("the marketplace answers %s %s", r.status_code, r.code)
        if r.status_code >= 300:
            fair = node.invoice(due, memo=f"escrowlab payout order {order['id']}", expiry_s=3600)
            self.s.payout_invoice(order["id"], fair["payment_request"])
        self.settle_on(self.b, order, "RELEASED")


class WrongAmountPayoutInvoice(_BadPayoutInvoice):
    name = "wrong_amount_payout_invoice"
    summary = "A seller without a bound node hands in an invoice for too much; it is refused, the right one paid."

    def bad_invoice(self, node, order: dict, due: int) -> dict:
        self.log.info("seller2 asks for %s sats where %s are due", order["price_sats"], due)
        return node.invoice(order["price_sats"], memo=f"escrowlab payout order {order['id']}")


class ShortExpiryPayoutInvoice(_BadPayoutInvoice):
    name = "short_expiry_payout_invoice"
    summary = ("A seller without a bound node hands in a payout invoice for the right amount that expires "
               "in two minutes, under the marketplace's minimum; it is refused, a lasting one paid.")

    def bad_invoice(self, node, order: dict, due: int) -> dict:
        least = self.cx.settings.get("payout_min_expiry_s", "?")
        self.log.info("seller2 hands in an invoice for the %s sats due that expires in 120 s (at least %s s "
                      "are asked)", due, least)
        return node.invoice(due, memo=f"escrowlab payout order {order['id']}", expiry_s=120)


SCENARIOS = [ForgedWebhook, ReplayedWebhook, WrongAmountPayoutInvoice, ShortExpiryPayoutInvoice]
