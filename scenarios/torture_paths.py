"""The paths a torture run kills the app on, one class each.

A path sets the stage (``prepare``), makes the one request that sets the
dangerous work in motion (``trigger``: the app or its worker is killed during
what follows), drives it to its end after the restart (``finish``), and checks
what the oracle does not see per order (``verify``): a withdrawal was paid on
the node exactly once, for what the ledger debited. Each path knows its crash
points (services/faults.py POINTS), in the order the app passes them.
"""

from __future__ import annotations

from regtest_cluster.nodes.bitcoind import sats
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.waiting import WaitTimeout, wait_for
from harness import actors_onchain as oc
from harness.actors_custodial import Account, list_custodial
from harness.oracle import Violation
from harness.presets import SCENARIO_SETTINGS


class Path:
    name = ""
    points: tuple[str, ...] = ()
    terminal = ""           # the order's end state, for paths that have an order
    max_kill_delay_s = 1.5  # a SIGKILL lands within this long after the trigger is sent

    def __init__(self, run) -> None:
        self.run = run
        self.world = run.world
        self.log = run.log

    def prepare(self) -> None:
        raise NotImplementedError

    def trigger(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def verify(self) -> list[Violation]:
        return []

    def teardown(self) -> None:
        pass

    withdrawals = 0  # withdrawals a run of this path checks


# --- ln_hold (settle and pay out; cancel the hold)

class LnHoldRelease(Path):
    name = "release"
    points = ("after_claim_release", "after_settle", "after_payout_marker", "after_payout_sent")
    terminal = "RELEASED"

    def prepare(self):
        self.b, self.s = self.run.buyer(), self.run.seller()
        self.order = self.run.place(self.b, self.s)
        self.s.ship(self.order["id"], "fastship", self.run.tracking(self.order))

    def trigger(self):
        self.b.confirm(self.order["id"])

    def finish(self):
        self.run.settle_on(self.b, self.order, self.terminal, timeout=90)


class LnHoldRefund(LnHoldRelease):
    name = "refund"
    points = ("after_cancel",)
    terminal = "REFUNDED"

    def prepare(self):
        self.b, self.s = self.run.buyer(), self.run.seller()
        self.order = self.run.place(self.b, self.s)

    def trigger(self):
        self.world.mine(SCENARIO_SETTINGS["ship_window_blocks"] + 1)

    def finish(self):
        self.world.mine(1)  # a block for the guardian's next look, should the kill have eaten its turn
        super().finish()


# --- custodial: the escrow inside the ledger, and money out of it

class _CustodialPath(Path):
    def custody_wallet(self, account: Account) -> None:
        account.wallet()  # makes the custody wallet; teardown unloads it (one per run's database)
        self.wallet_name = self.world.market.ledger(self.world.admin)["wallet"]

    def teardown(self):
        name = getattr(self, "wallet_name", None)
        if name:
            try:
                self.world.cluster.bitcoind.rpc.unloadwallet(name)
            except Exception:  # noqa: BLE001 - never loaded, or gone already
                pass


class CustodialRelease(_CustodialPath):
    name = "custodial_release"
    points = ("custodial_outcome_uncommitted",)
    terminal = "RELEASED"

    def prepare(self):
        self.b, self.s = self.run.buyer(), self.run.seller(bind=False)
        account = Account(self.b, self.world.cluster)
        self.custody_wallet(account)
        price = self.run.price()
        self.log.info("buyer1 deposits %s sats over Lightning", price)
        account.deposit_ln(price)
        listing = list_custodial(self.s, f"item-{self.run.rng.randrange(10**6)}", price)
        self.order = self.b.buy(listing["id"])
        self.run.orders.append(self.order["id"])
        self.log.info("order %s: %s sats held from the balance; seller1 ships", self.order["id"], price)
        self.s.ship(self.order["id"], "fastship", self.run.tracking(self.order))

    def trigger(self):
        self.b.confirm(self.order["id"])

    def finish(self):
        self.run.settle_on(self.b, self.order, self.terminal, timeout=60)


class _Withdrawal(_CustodialPath):
    withdrawals = 1

    def funded_buyer(self, how: str, deposit) -> None:
        """buyer1 with a custodial balance; half of it is the amount to withdraw."""
        self.b = self.run.buyer()
        self.account = Account(self.b, self.world.cluster)
        self.custody_wallet(self.account)
        self.deposit = self.run.price(40_000, 80_000)
        self.log.info("buyer1 deposits %s sats %s", self.deposit, how)
        deposit(self.account, self.deposit)
        self.amount = self.deposit // 2


class LnWithdrawal(_Withdrawal):
    name = "ln_withdrawal"
    points = ("after_ln_withdraw_reserve", "after_ln_withdraw_sent")

    def prepare(self):
        self.funded_buyer("over Lightning", Account.deposit_ln)
        self.invoice = self.b.node.rest.addinvoice(self.amount, memo=f"torture withdrawal {self.run.seed}")
        self.payment_hash = self.b.node.rest.decodepayreq(self.invoice["payment_request"])["payment_hash"]

    def trigger(self):
        self.log.info("buyer1 withdraws %s sats to an invoice of its own node", self.amount)
        self.account.pay_out(self.invoice["payment_request"])

    def finish(self):
        if not self.account.withdrawals()["lightning"]:
            self.log.info("the app died before it recorded the withdrawal: buyer1 asks again")
            self.account.pay_out(self.invoice["payment_request"])
        self.log.info("the restarted worker must finish the withdrawal on its own")
        try:
            wait_for(lambda: self.account.withdrawals()["lightning"][0]["status"] in ("SUCCEEDED", "FAILED"),
                     timeout=60, what="the withdrawal to be final")
        except WaitTimeout as exc:
            self.log.info("not final: %s", exc)

    def verify(self):
        out = []
        hub_paid = [p for p in self.world.cluster.node("hub").rest.listpayments()
                    if p["payment_hash"] == self.payment_hash and p.get("status") == "SUCCEEDED"]
        try:
            invoice = self.b.node.rest.lookup_invoice(bytes.fromhex(self.payment_hash))
        except LndError:
            invoice = {"state": "GONE"}
        received = int(invoice.get("amt_paid_sat", 0) or 0) if invoice.get("state") == "SETTLED" else 0
        [w] = self.account.withdrawals()["lightning"] or [{"status": "ABSENT", "fee_sats": 0, "fee_limit_sats": 0}]
        balances = self.account.wallet()
        if len(hub_paid) > 1 or received > self.amount:
            out.append(Violation("I3", None, f"withdrawal paid {len(hub_paid)} times, {received} sats received "
                                             f"for {self.amount}", {"payment_hash": self.payment_hash}))
        if w["status"] != ("SUCCEEDED" if hub_paid else "FAILED"):
            out.append(Violation("I14", None, f"withdrawal is {w['status']} in the app, "
                                              f"{'SUCCEEDED' if hub_paid else 'not paid'} on the hub", w))
        fee = min(w["fee_sats"], w["fee_limit_sats"]) if hub_paid else 0
        paid_out = (received + fee) if hub_paid else 0
        debited = self.deposit - balances["available_sats"] - balances["inflight_sats"]
        if debited != paid_out or balances["inflight_sats"]:
            out.append(Violation("I1", None, f"buyer1 was debited {debited} sats ({balances['inflight_sats']} still "
                                             f"in flight); the node shows {paid_out} paid out",
                                 {"expected": self.deposit - paid_out,
                                  "actual": balances["available_sats"]}))
        return out


class OnchainWithdrawal(_Withdrawal):
    name = "onchain_withdrawal"
    points = ("after_batch_claim", "after_batch_sent")
    max_kill_delay_s = 3.0  # the worker batches on its next pass, up to 2 s after the request

    def prepare(self):
        self.funded_buyer("on chain", Account.deposit_onchain)
        self.miner = self.world.cluster.bitcoind.miner()
        self.address = self.miner.getnewaddress()
        self.key = f"torture-{self.run.seed}-{self.run.index}"

    def trigger(self):
        self.log.info("buyer1 withdraws %s sats to %s", self.amount, self.address)
        self.account.withdraw_onchain(self.address, self.amount, key=self.key)

    def requests(self) -> list[dict]:
        return self.account.withdrawals()["onchain"]

    def finish(self):
        self.log.info("buyer1 repeats its request (same idempotency key: the same withdrawal)")
        answer = self.account.withdraw_onchain(self.address, self.amount, key=self.key)
        self.log.info("the app answers %s", answer.status_code)
        try:
            wait_for(lambda: self.requests()[0]["status"] not in ("PENDING", "BATCHED"), timeout=60,
                     what="the withdrawal batch to be broadcast")
            self.world.mine(self.account.wallet()["confirmations"])
            wait_for(lambda: self.requests()[0]["status"] in ("CONFIRMED", "FAILED"), timeout=30,
                     what="the withdrawal to be confirmed")
        except WaitTimeout as exc:
            self.log.info("not final: %s", exc)

    def verify(self):
        out = []
        [r] = self.requests()
        received = self.miner.call("listreceivedbyaddress", 0, True, True, self.address)
        txids = received[0]["txids"] if received else []
        got = sats(received[0]["amount"]) if received else 0
        balances = self.account.wallet()
        if len(txids) > 1:
            out.append(Violation("I3", None, f"{len(txids)} transactions paid the withdrawal address",
                                 {"txids": txids}))
        miner_fee = 0
        if txids:
            custody = self.world.cluster.bitcoind.wallet(self.wallet_name)
            miner_fee = sum(-sats(custody.gettransaction(t)["fee"]) for t in txids)
        if r["status"] != "CONFIRMED" or r["txid"] not in txids:
            out.append(Violation("I15", None, f"withdrawal is {r['status']} ({r['txid']}), the chain shows {txids}", r))
        debited = self.deposit - balances["available_sats"] - balances["inflight_sats"]
        if debited != got + miner_fee or balances["inflight_sats"]:
            out.append(Violation("I1", None, f"buyer1 was debited {debited} sats ({balances['inflight_sats']} still "
                                             f"in flight); the chain shows {got} received and {miner_fee} fee",
                                 {"expected": self.deposit - got - miner_fee,
                                  "actual": balances["available_sats"]}))
        return out


# --- onchain_multisig: the release spend, signed by the arbiter and the seller

class MultisigRelease(Path):
    name = "multisig_release"
    points = ("after_spend_recorded", "after_spend_broadcast")
    terminal = "RELEASED"

    def prepare(self):
        self.wallets: list[oc.ChainWallet] = []
        self.b, self.bw = self.party("buyer", "buyer1", 1_000_000)
        self.s, self.sw = self.party("seller", "seller1", 0)
        listing = oc.list_item(self.s, f"item-{self.run.rng.randrange(10**6)}", self.run.price(100_000, 500_000))
        self.order = self.b.buy(listing["id"])
        self.run.orders.append(self.order["id"])
        self.log.info("order %s: the buyer pays %s sats to the multisig", self.order["id"], self.order["price_sats"])
        oc.pay_escrow(self.b, self.bw, self.order["id"], self.order["price_sats"])
        self.world.mine(1)
        self.run.settle_on(self.b, self.order, "FUNDED")
        self.s.ship(self.order["id"], "fastship", self.run.tracking(self.order))
        self.b.confirm(self.order["id"])
        oc.wait_escrow_spend(self.b, self.order["id"])
        self.log.info("the arbiter signed the release; it waits for the seller")

    def party(self, role: str, node: str, fund: int):
        party = self.run.buyer(node) if role == "buyer" else self.run.seller(node, bind=False)
        wallet = oc.ChainWallet.create(self.world.cluster, role, fund)
        self.wallets.append(wallet)
        oc.bind_keys(party, wallet, seller=role == "seller")
        return party, wallet

    def trigger(self):
        self.log.info("the seller signs the release PSBT and hands it back")
        oc.sign_pending(self.s, self.sw, self.order["id"])

    def finish(self):
        def released() -> bool:
            if self.b.order(self.order["id"])["state"] == self.terminal:
                return True
            view = oc.escrow(self.b, self.order["id"])
            if view["spend"] and view["spend"]["awaiting_signature"]:
                self.log.info("the signature was lost with the app: the seller signs again")
                oc.sign_pending(self.s, self.sw, self.order["id"])
            elif view["spend"] and view["spend"]["txid"] and not view["spend"]["confirmations"]:
                self.world.mine(1)
            return False

        try:
            wait_for(released, timeout=60, what=f"order {self.order['id']} RELEASED")
        except WaitTimeout as exc:
            self.log.info("not reached: %s", exc)

    def teardown(self):
        for wallet in getattr(self, "wallets", []):
            wallet.unload()


PATH_CLASSES = (LnHoldRelease, LnHoldRefund, CustodialRelease, LnWithdrawal, OnchainWithdrawal, MultisigRelease)
