"""On-chain multisig escrow: the buyer pays a 2-of-3 address (buyer, seller, marketplace
arbiter) with the seller's timeout branch; every outcome is one spend the marketplace
signs with one party. Funding mistakes, a reorg, a fee spike and a vanished operator."""

from __future__ import annotations

from harness.chain_wallet import TimelockNotReached
from harness import actors_onchain as oc
from harness.scenario import Scenario
from harness.world import ADDRESSES

FINAL = {"release": "RELEASED", "refund": "REFUNDED", "split": "SPLIT"}


class _Onchain(Scenario):
    modes = ("onchain_multisig",)

    def setup(self):
        self.wallets: list[oc.ChainWallet] = []
        self.b, self.bw = self.onchain_party("buyer", "buyer1")
        self.s, self.sw = self.onchain_party("seller", "seller1")

    def onchain_party(self, role: str, node: str):
        party = self.buyer(node) if role == "buyer" else self.seller(node, bind=False)
        wallet = oc.ChainWallet.create(self.world.cluster, role, 3_000_000 if role == "buyer" else 0)
        self.wallets.append(wallet)
        oc.bind_keys(party, wallet, seller=role == "seller")
        return party, wallet

    def teardown(self):
        for wallet in self.wallets:
            wallet.unload()

    # --- steps
    def open_order(self) -> dict:
        listing = oc.list_item(self.s, f"item-{self.rng.randrange(10**6)}", self.price(100_000, 500_000))
        order = self.b.buy(listing["id"])
        self.orders.append(order["id"])
        view = oc.escrow(self.b, order["id"])
        self.log.info("order %s: pay %s sats to the escrow %s", order["id"], view["amount_sats"], view["address"])
        return order

    def pay(self, order: dict, *amounts: int) -> None:
        self.log.info("the buyer pays %s", " and then ".join(f"{a} sats" for a in amounts))
        oc.pay_escrow(self.b, self.bw, order["id"], *amounts)

    def place(self, *extra: int) -> dict:
        """An order paid with the price (plus ``extra`` payments) and confirmed: FUNDED."""
        order = self.open_order()
        self.pay(order, order["price_sats"], *extra)
        self.world.mine(1)
        return self.settle_on(self.b, order, "FUNDED")

    def ship_and_confirm(self, order: dict) -> None:
        self.log.info("the seller ships; the buyer confirms receipt")
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.b.confirm(order["id"])

    def sign_as_asked(self, order: dict, final: str) -> dict:
        """The party the spend waits for signs it in its own wallet; a block confirms it."""
        view = oc.wait_escrow_spend(self.b, order["id"])
        who = view["spend"]["signer"]
        party, wallet = (self.s, self.sw) if who == "seller" else (self.b, self.bw)
        self.log.info("the %s signs the %s PSBT in its own wallet", who, view["spend"]["kind"])
        oc.sign_pending(party, wallet, order["id"])
        oc.wait_broadcast(party, order["id"])
        self.world.mine(1)
        return self.settle_on(party, order, final)


class OnchainReleaseAfterDelivery(_Onchain):
    name = "onchain_release_after_delivery"
    summary = "Paid to the multisig, shipped, delivered; the dispute window ends and the seller co-signs the release."

    def run(self):
        order = self.place()
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the courier reports delivery; the 6-block dispute window passes")
        self.world.courier().deliver(self.tracking(order), ADDRESSES["buyer1"])
        self.world.mine(6)
        self.settle_on(self.b, order, "RELEASE_PENDING")
        self.sign_as_asked(order, "RELEASED")


class OnchainShipTimeoutRefund(_Onchain):
    name = "onchain_ship_timeout_refund"
    summary = "The seller never ships: the buyer co-signs the refund of the multisig."

    def run(self):
        order = self.place()
        self.log.info("six blocks pass without shipment")
        self.world.mine(6)
        self.settle_on(self.b, order, "REFUND_PENDING")
        self.sign_as_asked(order, "REFUNDED")


class _OnchainRuling(_Onchain):
    ruling = ""
    share = None

    def run(self):
        arbiter = self.arbiter()
        order = self.place()
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the buyer disputes; blocks pass, the dispute freezes the timers")
        self.b.dispute(order["id"], "not as described")
        self.world.mine(6)
        self.log.info("the arbiter rules: %s%s", self.ruling, f" (buyer {self.share}%)" if self.share else "")
        arbiter.rule(order["id"], self.ruling, self.share)
        self.sign_as_asked(order, FINAL[self.ruling])


class OnchainRulingRelease(_OnchainRuling):
    name = "onchain_dispute_ruling_release"
    summary = "A dispute ruled for the seller: arbiter and seller sign the release."
    ruling = "release"


class OnchainRulingRefund(_OnchainRuling):
    name = "onchain_dispute_ruling_refund"
    summary = "A dispute ruled for the buyer: arbiter and buyer sign the refund."
    ruling = "refund"


class OnchainRulingSplit(_OnchainRuling):
    name = "onchain_dispute_ruling_split"
    summary = "A split ruling: one spend pays both; the larger share signs and pays the miner fee."
    ruling = "split"

    def configure(self):
        self.share = self.rng.choice([25, 40, 60, 75])
        return super().configure()


class OnchainMarketplaceGone(_Onchain):
    name = "onchain_marketplace_gone"
    summary = "The marketplace vanishes after shipment: after N blocks the seller spends alone by the timeout branch."
    anchors = ("F39",)
    settings = {"onchain_timeout_blocks": 32}  # just above the trade windows × 1.7

    def run(self):
        order = self.place()
        self.s.ship(order["id"], "fastship", self.tracking(order))
        view = oc.escrow(self.s, order["id"])
        self.cx.expected_final[order["id"]] = {"SHIPPED", "DISPUTED"}
        self.log.info("the marketplace stops for good; the seller kept the escrow's descriptor")
        self.world.market.stop()
        try:
            oc.timeout_spend(self.sw, view)
            self.log.info("the timeout spend was accepted before N blocks")
        except TimelockNotReached as exc:
            self.log.info("the seller's early try is refused: %s", exc.message.split("(bitcoind: ")[-1].rstrip(")"))
        self.log.info("mining to height %s, where the timeout branch opens", view["timeout_height"])
        self.world.mine_to(view["timeout_height"] - 1)
        done = oc.timeout_spend(self.sw, view)
        self.world.mine(1)
        self.log.info("the seller took %s sats back alone in %s", done.spend.paid_sats("seller"), done.txid)


class OnchainOverpaid(_Onchain):
    name = "onchain_overpaid"
    summary = "The buyer pays too much: the release returns the excess to the buyer."

    def run(self):
        order = self.open_order()
        excess = self.rng.randrange(5_000, 50_000)
        self.pay(order, order["price_sats"] + excess)
        self.world.mine(1)
        self.settle_on(self.b, order, "FUNDED")
        self.ship_and_confirm(order)
        self.sign_as_asked(order, "RELEASED")


class OnchainUnderpaid(_Onchain):
    name = "onchain_underpaid"
    summary = "The buyer pays too little: never funded; at the deadline the partial payment is refunded."

    def run(self):
        order = self.open_order()
        self.pay(order, order["price_sats"] - self.rng.randrange(10_000, 50_000))
        self.world.mine(1)
        oc.wait_escrow(self.b, order["id"], lambda v: v["funding_status"] == "underpaid", "the underpayment")
        self.log.info("the funding window passes with the order unfunded")
        self.world.mine(5)
        self.settle_on(self.b, order, "EXPIRED")
        self.log.info("the buyer co-signs the refund of what arrived")
        oc.sign_pending(self.b, self.bw, order["id"])
        oc.wait_broadcast(self.b, order["id"])
        self.world.mine(1)
        oc.wait_escrow(self.b, order["id"], lambda v: v["spend"]["height"] is not None, "the refund to confirm")


class OnchainPaidTwice(_Onchain):
    name = "onchain_paid_twice"
    summary = "The buyer pays the price twice: both coins go into the release, the second back to the buyer."

    def run(self):
        order = self.open_order()
        self.pay(order, order["price_sats"], order["price_sats"])
        self.world.mine(1)
        self.settle_on(self.b, order, "FUNDED")
        self.ship_and_confirm(order)
        self.sign_as_asked(order, "RELEASED")


class OnchainFundingReorg(_Onchain):
    name = "onchain_funding_reorg"
    summary = "The funding block is reorged away: the order rolls back, cannot ship, and is funded again when re-mined."

    def run(self):
        order = self.place()
        self.cx.reorged_blocks = self.world.cluster.faults.reorg(1)
        block = self.cx.reorged_blocks[0]
        self.log.info("a reorg takes away block %s, which holds the funding", block[:16])
        self.settle_on(self.b, order, "AWAITING_FUNDS")
        refused = self.s.act("ship", order["id"], courier="fastship", tracking=self.tracking(order))
        self.log.info("the seller tries to ship on the vanished funding: HTTP %s", refused.status_code)
        self.log.info("a new block confirms the funding again")
        self.world.mine(1)
        self.settle_on(self.b, order, "FUNDED")
        self.ship_and_confirm(order)
        self.sign_as_asked(order, "RELEASED")

    def teardown(self):
        # an equal-work fork: the tip stays, the block is valid again
        self.world.cluster.faults.restore(self.cx.reorged_blocks)
        super().teardown()


class OnchainFeeSpike(_Onchain):
    name = "onchain_fee_spike_cpfp"
    summary = "Miners ignore the release (a fee spike); the seller lifts it with a CPFP child from its own output."

    def run(self):
        order = self.place()
        self.ship_and_confirm(order)
        oc.sign_pending(self.s, self.sw, order["id"])
        view = oc.wait_broadcast(self.s, order["id"])
        rpc, txid = self.world.cluster.bitcoind.rpc, view["spend"]["txid"]
        self.log.info("fees spike: miners treat the release %s as paying nothing", txid[:16])
        self.world.cluster.faults.starve(txid)
        self.world.mine(1)
        if rpc.getrawtransaction(txid, True).get("confirmations", 0):
            raise AssertionError(f"the release {txid} confirmed although miners were told it pays nothing")
        self.log.info("a block later the release is still unconfirmed; the order stays RELEASE_PENDING")
        child = oc.bump_release(self.sw, view, 25)
        self.log.info("the seller spends its output at 25 sat/vB (child %s)", child[:16])
        self.world.mine(1)
        self.settle_on(self.s, order, "RELEASED")


SCENARIOS = [OnchainReleaseAfterDelivery, OnchainShipTimeoutRefund, OnchainRulingRelease, OnchainRulingRefund,
             OnchainRulingSplit, OnchainMarketplaceGone, OnchainOverpaid, OnchainUnderpaid, OnchainPaidTwice,
             OnchainFundingReorg, OnchainFeeSpike]
