"""Where Lightning implementations differ for hold-invoice escrow (the interop matrix runs
these with buyers and sellers on LDK: ``escrowlab scenario interop``)."""

from __future__ import annotations

from escrow_protocol.formulas import PAYER_CLTV_CAPS
from harness.driver import Unsupported
from harness.scenario import Scenario
from regtest_cluster.nodes.wallet import wallet


class LdkPayerOverCltvCap(Scenario):
    name = "ldk_payer_over_cltv_cap"
    summary = ("Trade windows so long that the hold invoice asks more CLTV than an LDK wallet routes (1008 "
               "blocks): the buyer is told so before funding, the LDK wallet's payment is refused with nothing "
               "sent, and the unpaid order expires; an LND wallet (cap 2016) funds the same terms.")
    # ship 1000 + delivery 6 + dispute 6 blocks at speedup 1, + margin 24 + delta 18 = 1054 blocks
    settings = {"ship_window_blocks": 1000, "speedup_factor": 1.0}
    needs = "a buyer node on LDK"

    def setup(self):
        buyers = {impl: [n for n in self.world.cluster.nodes.values() if n.role == "buyer"
                         and wallet(n).impl == impl] for impl in ("ldk", "lnd")}
        if not buyers["ldk"]:
            raise Unsupported(f"needs {self.needs}: `escrowlab scenario interop` runs it with LDK buyers")
        self.b = self.buyer(buyers["ldk"][0].name)
        self.lnd_b = self.buyer(buyers["lnd"][0].name) if buyers["lnd"] else None
        self.s = self.seller()

    def run(self):
        order = self.order_unpaid(self.b, self.s)
        self.cx.expected_final[order["id"]] = {"EXPIRED"}
        hold = order["hold"]
        self.log.info("the hold invoice asks a CLTV of %s blocks; LDK routes at most %s", hold["cltv_expiry"],
                      PAYER_CLTV_CAPS["ldk"])
        self.log.info("before funding, the buyer is told: %s", hold.get("payer_notice"))
        if hold["cltv_expiry"] > PAYER_CLTV_CAPS["ldk"] and "LDK" not in (hold.get("payer_notice") or ""):
            raise AssertionError("the buyer was not told before funding that an LDK wallet cannot pay this hold")
        paid = wallet(self.b.node).pay(hold["payment_request"], timeout_s=30)
        self.log.info("%s pays from its LDK wallet: %s %s", self.b.name, paid["status"],
                      paid.get("failure_reason") or paid.get("error") or "")
        if paid["status"] != "FAILED":
            raise AssertionError(f"an LDK wallet's payment of a {hold['cltv_expiry']}-block hold ended "
                                 f"{paid['status']}, not refused")
        self.settle_on(self.b, order, "AWAITING_FUNDS", timeout=5)
        self.log.info("nothing reached the hub; the funding window passes in blocks")
        self.world.mine(6)
        self.settle_on(self.b, order, "EXPIRED")
        if self.lnd_b is not None:
            self.log.info("%s, on LND, funds an order on the same terms, and confirms receipt", self.lnd_b.name)
            other = self.place(self.lnd_b, self.s)
            self.s.ship(other["id"], "fastship", self.tracking(other))
            self.lnd_b.confirm(other["id"])
            self.settle_on(self.lnd_b, other, "RELEASED")


SCENARIOS = [LdkPayerOverCltvCap]
