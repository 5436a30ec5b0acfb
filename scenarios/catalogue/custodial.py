"""Custodial escrow: buyers pay from a balance the marketplace holds (the dBay model).

Money comes in from the parties' own bitcoind wallets (k confirmations) and
goes out to their own Lightning nodes or addresses; every order outcome is one
ledger transfer. The oracle compares the ledger with bitcoind and the hub
(I1) and checks that in-flight withdrawals stay reserved (I14).
"""

from __future__ import annotations

from regtest_cluster.waiting import wait_for
from harness.oracle import custodial as oracle_custodial
from harness.actors_custodial import Account, HeldInvoice, list_custodial
from harness.scenario import Scenario
from harness.world import ADDRESSES

OUTCOME = {"release": "RELEASED", "refund": "REFUNDED", "split": "SPLIT"}


class _Custodial(Scenario):
    modes = ("custodial",)

    def account(self, party) -> Account:
        return Account(party, self.world.cluster)

    def deposit(self, party, amount_sats: int) -> Account:
        account = self.account(party)
        self.log.info("%s sends %s sats from its own wallet to its deposit address, and k blocks pass",
                      account.name, amount_sats)
        account.deposit_onchain(amount_sats)
        return account

    def place(self, buyer, seller, price: int | None = None) -> dict:
        """List an item for custodial escrow and buy it: the price moves into escrow at once."""
        listing = list_custodial(seller, f"item-{self.rng.randrange(10**6)}", price or self.price())
        order = buyer.buy(listing["id"])
        self.orders.append(order["id"])
        self.log.info("order %s: %s sats held from %s's balance (%s)", order["id"], order["price_sats"],
                      buyer.node.name, order["state"])
        return order

    def snapshot(self, why: str) -> None:
        """Record the app's withdrawals next to the hub's view now, for the I14 check."""
        self.log.info("snapshot for the oracle: %s", why)
        snapshots = getattr(self.cx, "custodial_snapshots", [])
        snapshots.append(oracle_custodial.snapshot_in_flight(self.world))
        self.cx.custodial_snapshots = snapshots


class CustodialReleaseAfterDelivery(_Custodial):
    name = "custodial_release_after_delivery"
    summary = "Deposit, buy from the balance, courier delivers, window ends: seller credited, then withdraws over LN."
    anchors = ("F40",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller(bind=False)

    def run(self):
        price = self.price()
        self.deposit(self.b, price + self.price())
        order = self.place(self.b, self.s, price)
        self.log.info("seller1 ships with fastship")
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("the courier reports delivery to the buyer's address")
        self.world.courier().deliver(self.tracking(order), ADDRESSES["buyer1"])
        self.log.info("the buyer stays silent while the 6-block dispute window passes")
        self.world.mine(6)
        final = self.settle_on(self.b, order, "RELEASED")
        seller = self.account(self.s)
        credited = seller.wait_balance(available_sats=final["price_sats"] - final["fee_sats"])["available_sats"]
        amount = credited // 2
        self.log.info("seller1 withdraws %s of its %s sats to an invoice of its own node", amount, credited)
        answer = seller.withdraw_ln(amount)
        self.log.info("the hub answers %s: %s", answer.status_code, answer.json().get("status"))
        seller.wait_balance(inflight_sats=0)


class CustodialShipTimeoutRefund(_Custodial):
    name = "custodial_ship_timeout_refund"
    summary = "The seller never ships; the ship window closes and the price returns to the buyer's balance."
    anchors = ("F17",)

    def setup(self):
        self.b, self.s = self.buyer("buyer2"), self.seller("seller2", bind=False)

    def run(self):
        price = self.price()
        account = self.deposit(self.b, price)
        order = self.place(self.b, self.s, price)
        self.log.info("six blocks pass without shipment")
        self.world.mine(6)
        self.settle_on(self.b, order, "REFUNDED")
        account.wait_balance(available_sats=price, held_sats=0)


class _CustodialRuling(_Custodial):
    ruling = ""
    share = None

    def setup(self):
        self.b, self.s, self.a = self.buyer("buyer2"), self.seller(bind=False), self.arbiter()

    def run(self):
        price = self.price()
        self.deposit(self.b, price)
        order = self.place(self.b, self.s, price)
        self.s.ship(order["id"], "fastship", self.tracking(order))
        self.log.info("buyer2 disputes: the item is not as described")
        self.b.dispute(order["id"], "not as described")
        self.log.info("blocks pass; the dispute freezes automatic release")
        self.world.mine(12)
        self.log.info("the arbiter rules: %s%s", self.ruling, f" ({self.share}% to the buyer)" if self.share else "")
        self.a.rule(order["id"], self.ruling, self.share)
        self.settle_on(self.b, order, OUTCOME[self.ruling])


class CustodialRulingRelease(_CustodialRuling):
    name = "custodial_ruling_release"
    summary = "A dispute ruled for the seller: the held price goes to the seller less the fee."
    ruling = "release"


class CustodialRulingRefund(_CustodialRuling):
    name = "custodial_ruling_refund"
    summary = "A dispute ruled for the buyer: the held price returns to the buyer's balance, no fee."
    ruling = "refund"
    anchors = ("F13",)


class CustodialRulingSplit(_CustodialRuling):
    name = "custodial_ruling_split"
    summary = "A split ruling: the buyer's share back, the seller's part less its fee."
    ruling = "split"
    anchors = ("F22",)

    def configure(self):
        self.share = self.rng.choice([25, 40, 50, 70])
        return super().configure()


class CustodialConcurrentWithdrawals(_Custodial):
    name = "custodial_concurrent_withdrawals"
    summary = "Two withdrawals of a whole balance, then two orders on it, at the same moment: one of each succeeds."
    anchors = ("F32",)

    def setup(self):
        self.b, self.s = self.buyer(), self.seller("seller2", bind=False)

    def run(self):
        balance = self.price(40_000, 80_000)
        account = self.deposit(self.b, balance)
        miner = self.world.cluster.bitcoind.miner()
        targets = [miner.getnewaddress(), miner.getnewaddress()]
        self.log.info("buyer1 asks for two on-chain withdrawals of its whole %s sats at once", balance)
        codes = account.race([lambda a=a, i=i: account.withdraw_onchain(a, balance, key=f"race-{self.seed}-{i}")
                              for i, a in enumerate(targets)])
        self.log.info("status codes %s", codes)
        self.cx.race_results.append(codes)
        self.log.info("the worker batches the winner; k blocks confirm it")
        wait_for(lambda: all(r["status"] != "PENDING" for r in account.withdrawals()["onchain"]),
                 timeout=30, what="the withdrawal batch to be broadcast")
        self.world.mine(account.wallet()["confirmations"])
        account.wait_balance(available_sats=balance - balance * sum(c < 300 for c in codes), inflight_sats=0)

        price = self.price(balance // 2 + 1000, balance)
        account = self.deposit(self.b, balance)
        listings = [list_custodial(self.s, f"one-of-two-{i}", price) for i in range(2)]
        self.log.info("buyer1 orders two %s-sat items at once with %s sats", price, balance)
        responses = []

        def buy(listing_id):
            r = self.b.try_buy(listing_id)
            responses.append(r)
            return r

        codes = account.race([lambda lid=lst["id"]: buy(lid) for lst in listings])
        self.log.info("status codes %s", codes)
        self.cx.race_results.append(codes)
        for r in responses:
            if r.status_code == 201:
                self.orders.append(r.json()["id"])
                self.log.info("order %s is funded; seller2 never ships it, so the ship window refunds it",
                              r.json()["id"])
        self.world.mine(6)
        for oid in self.orders:
            self.settle_on(self.b, {"id": oid}, "REFUNDED")


class CustodialConcurrentLnWithdrawals(_Custodial):
    name = "custodial_concurrent_ln_withdrawals"
    summary = ("Two Lightning withdrawals that each need more than half the balance, at the same moment: one is "
               "paid and debited, the other refused before the hub pays anything.")
    anchors = ("F32",)

    def setup(self):
        self.s = self.seller("seller2", bind=False)

    def run(self):
        balance = self.price(40_000, 80_000)
        account = self.deposit(self.s, balance)
        amount = balance // 2 + 1000  # with its fee reserve, one fits the balance and two do not
        invoices = [self.s.node.rest.addinvoice(amount, memo=f"withdrawal {i}")["payment_request"] for i in range(2)]
        self.log.info("seller2 asks for two Lightning withdrawals of %s sats at once, to two invoices of its own "
                      "node, from a balance of %s", amount, balance)
        codes = account.race([lambda r=r, i=i: account.pay_out(r, key=f"ln-race-{self.seed}-{i}")
                              for i, r in enumerate(invoices)])
        self.log.info("status codes %s", codes)
        self.cx.race_results.append(codes)
        self.log.info("the hub's payments end; nothing stays reserved")
        wallet = account.wait_balance(inflight_sats=0)
        self.log.info("seller2 holds %s sats; the ledger lists %s Lightning withdrawals", wallet["available_sats"],
                      len(account.withdrawals()["lightning"]))


class CustodialWithdrawalInFlight(_Custodial):
    name = "custodial_withdrawal_in_flight"
    summary = "A withdrawal to a hold invoice stays IN_FLIGHT: its debit stays reserved until the payee cancels."
    anchors = ("F29",)

    def setup(self):
        self.b = self.buyer("buyer2")
        self.held: HeldInvoice | None = None

    def run(self):
        deposit = self.price(40_000, 80_000)
        account = self.deposit(self.b, deposit)
        amount = deposit // 2
        self.held = HeldInvoice.create(self.b.node, amount)
        try:
            self.hold_in_flight(account, amount)
        finally:
            self.log.info("buyer2 cancels its hold invoice: the payment fails back")
            self.held.cancel()  # before the oracle runs: it waits for every HTLC to resolve
        wait_for(lambda: account.withdrawals()["lightning"][0]["status"] == "FAILED", timeout=30,
                 what="the withdrawal to be FAILED")
        account.wait_balance(available_sats=deposit, inflight_sats=0)

    def hold_in_flight(self, account: Account, amount: int) -> None:
        self.log.info("buyer2 withdraws %s sats to a hold invoice of its own node", amount)
        answer = account.pay_out(self.held.payment_request)
        body = answer.json()
        self.log.info("the app answers %s %s; %s sats reserved", answer.status_code, body.get("status"),
                      body.get("amount_sats", 0) + body.get("fee_limit_sats", 0))
        self.held.wait_accepted()
        self.snapshot("the HTLC is held at buyer2")
        self.log.info("blocks pass and the worker asks the hub again")
        self.world.mine(2)
        wait_for(lambda: account.withdrawals()["lightning"][0]["status"] == "IN_FLIGHT", timeout=10,
                 what="the withdrawal to be IN_FLIGHT")
        self.snapshot("after the worker's passes")

    def teardown(self):
        if self.held is not None:
            self.held.cancel()  # leave no HTLC held in the shared cluster


SCENARIOS = [CustodialReleaseAfterDelivery, CustodialShipTimeoutRefund, CustodialRulingRelease,
             CustodialRulingRefund, CustodialRulingSplit, CustodialConcurrentWithdrawals, CustodialConcurrentLnWithdrawals,
             CustodialWithdrawalInFlight]
