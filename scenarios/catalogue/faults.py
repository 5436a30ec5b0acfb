"""Faults aimed at an escrow state: crashed nodes, a crashed app, racing requests."""

from __future__ import annotations

import threading

from harness.scenario import Scenario
from harness.world import ADDRESSES


def race(calls) -> list[int]:
    """Fire the calls at once; return their HTTP status codes."""
    barrier = threading.Barrier(len(calls))
    codes: list[int] = [0] * len(calls)

    def go(i, fn):
        barrier.wait()
        codes[i] = fn().status_code

    threads = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


class SellerOfflineAtPayout(Scenario):
    name = "seller_offline_at_payout"
    summary = "The seller's node is down when the release is due: the payout retries until it is back."
    anchors = ("F8", "F16")

    def setup(self):
        self.b, self.s = self.buyer(), self.seller("seller2")

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("seller2's node goes down")
        self.world.cluster.faults.stop("seller2")
        self.b.confirm(order["id"])
        self.log.info("the release is claimed and settled, but the payout cannot reach seller2")
        self.settle_on(self.b, order, "RELEASED", timeout=5)
        self.log.info("seller2's node comes back")
        self.world.cluster.faults.start("seller2")
        self.settle_on(self.b, order, "RELEASED", timeout=60)

    def teardown(self):
        self.world.cluster.faults.heal_all()


class BuyerNodeCrashWhileHeld(Scenario):
    name = "buyer_node_crash_while_held"
    summary = "The buyer's node is SIGKILLed while its HTLC is held; the trade completes and balances settle."

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.log.info("buyer2's node is killed (SIGKILL) while the hub holds its HTLC")
        self.world.cluster.faults.kill("buyer2")
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.world.courier().deliver(self.tracking(order), ADDRESSES["buyer2"])
        self.b.confirm(order["id"])
        self.settle_on(self.b, order, "RELEASED")
        self.log.info("buyer2's node restarts and learns the HTLC was settled")
        self.world.cluster.faults.start("buyer2")
        self.payments[order["id"]].join(5)

    def teardown(self):
        self.world.cluster.faults.heal_all()


class HubRestartMidHtlc(Scenario):
    name = "hub_restart_mid_htlc"
    summary = "The hub's LND restarts while holding the buyer's HTLC; the app reconciles and completes."
    anchors = ("F14",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.log.info("the hub's LND restarts with the HTLC held")
        self.world.cluster.faults.restart("hub")
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.b.confirm(order["id"])
        self.settle_on(self.b, order, "RELEASED", timeout=60)


class _AppCrash(Scenario):
    point = ""

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the app is armed to crash at '%s'", self.point)
        self.world.restart_app(fault_points=[self.point])
        self.b.confirm(order["id"])
        self.world.market.wait_exit()
        self.log.info("the app crashed at '%s'; restarting it without the fault", self.point)
        self.world.restart_app()
        self.settle_on(self.b, order, "RELEASED", timeout=60)


class AppCrashAfterSettle(_AppCrash):
    name = "app_crash_after_settle"
    summary = "The app dies between settling the hold and paying the seller; on restart it pays exactly once."
    point = "after_settle"
    anchors = ("F9", "F21")


class AppCrashAfterPayoutMarker(_AppCrash):
    name = "app_crash_after_payout_marker"
    summary = "The app dies after recording the payout but before sending it; the same invoice is paid once."
    point = "after_payout_marker"


class AppCrashAfterPayoutSent(_AppCrash):
    name = "app_crash_after_payout_sent"
    summary = "The app dies after the payout succeeded but before recording it; TrackPayment prevents a repeat."
    point = "after_payout_sent"
    anchors = ("F9",)


class DoubleReleaseRace(Scenario):
    name = "double_release_race"
    summary = "Two arbiters rule release and refund at the same instant: exactly one wins."
    anchors = ("F9", "F11", "F15")

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()
        self.arbs = [self.arbiter("arb-a"), self.arbiter("arb-b")]

    def run(self):
        order = self.place(self.b, self.s)
        self.b.dispute(order["id"], "wrong colour")
        self.log.info("release and refund are ruled concurrently")
        codes = race([lambda: self.arbs[0].act("rule", order["id"], ruling="release"),
                      lambda: self.arbs[1].act("rule", order["id"], ruling="refund")])
        self.log.info("answers: %s", codes)
        self.cx.race_results.append(codes)
        self.settle_on(self.b, order, "RELEASED", "REFUNDED")


class ConcurrentDuplicateConfirm(Scenario):
    name = "concurrent_duplicate_confirm"
    summary = "The buyer's app retries 'confirm' eight times at once: one release, one payout."
    anchors = ("F10", "F32")

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller("seller2")

    def run(self):
        order = self.place(self.b, self.s)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        codes = race([lambda: self.b.act("confirm", order["id"])] * 8)
        self.log.info("answers: %s", codes)
        self.cx.race_results.append(codes)
        self.settle_on(self.b, order, "RELEASED")


SCENARIOS = [SellerOfflineAtPayout, BuyerNodeCrashWhileHeld, HubRestartMidHtlc, AppCrashAfterSettle,
             AppCrashAfterPayoutMarker, AppCrashAfterPayoutSent, DoubleReleaseRace, ConcurrentDuplicateConfirm]
