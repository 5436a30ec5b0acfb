"""Parties with a custodial account: deposits from their own bitcoind wallet or
Lightning node, withdrawals back to them, balances as the app reports them.

Thin helpers over the driver's custodial verbs, like ``harness.actors``: they take
a registered ``Party`` (its driver and node) and the cluster for the chain side.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from dataclasses import dataclass

from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError, sats
from regtest_cluster.waiting import wait_for
from harness.actors import Party, Seller
from harness.driver import Answer

PARTY_WALLET_TOP_UP_SATS = 5_000_000
HOLD_CLTV = 40   # lnd 0.21 wants at least 24 on a hold invoice


def list_custodial(seller: Seller, title: str, price_sats: int, stock: int = 10) -> dict:
    """A listing whose orders are paid from the buyer's custodial balance."""
    return seller.list_item(title, price_sats, stock, mode="custodial")


def party_wallet(cluster: Cluster, name: str, need_sats: int) -> BitcoinRpc:
    """The party's own bitcoind wallet, topped up from the miner when it holds less than needed."""
    rpc = cluster.bitcoind.rpc
    wallet_name = f"party-{name}"
    if wallet_name not in rpc.listwallets():
        try:
            rpc.createwallet(wallet_name)
        except RpcError as exc:
            if "already exists" not in exc.message:
                raise
            rpc.loadwallet(wallet_name)
    wallet = cluster.bitcoind.wallet(wallet_name)
    if sats(wallet.getbalances()["mine"]["trusted"]) < need_sats + 100_000:
        cluster.bitcoind.miner().sendtoaddress(wallet.getnewaddress(), need_sats + PARTY_WALLET_TOP_UP_SATS)
        cluster.mine(1)
    return wallet


@dataclass
class Account:
    """One party's custodial account at the marketplace."""

    party: Party
    cluster: Cluster

    @property
    def name(self) -> str:
        return self.party.node.name if self.party.node is not None else self.party.email.split("@")[0]

    def wallet(self) -> dict:
        """Balances (available, held, inflight) and the deposit address, as the app says."""
        return self.party.market.wallet(self.party)

    def withdrawals(self) -> dict:
        return self.party.market.withdrawals(self.party)

    def wait_balance(self, timeout: float = 30, **want: int) -> dict:
        """Wait until the named balances (available_sats=..., inflight_sats=...) are exactly these."""
        last: dict = {}

        def reached():
            nonlocal last
            last = self.wallet()
            return last if all(last[k] == v for k, v in want.items()) else None

        try:
            return wait_for(reached, timeout=timeout, what=f"{self.name}'s balances {want}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the wallet says {last}") from None

    # --- deposits
    def deposit_onchain(self, amount_sats: int, confirmations: int | None = None) -> str:
        """Pay the deposit address from the party's own wallet and mine the k blocks the app
        asks for; returns the txid once the app has credited it."""
        before = self.wallet()
        wallet = party_wallet(self.cluster, self.name, amount_sats)
        txid = wallet.sendtoaddress(before["deposit_address"], amount_sats)
        self.cluster.mine(confirmations or before["confirmations"])
        self.wait_balance(available_sats=before["available_sats"] + amount_sats)
        return txid

    def deposit_ln(self, amount_sats: int) -> dict:
        """Pay a hub deposit invoice from the party's node and wait for the credit."""
        before = self.wallet()
        invoice = self.party.market.ln_deposit(self.party, amount_sats)
        payment = self.party.node.rest.send_payment(invoice["payment_request"], fee_limit_sats=100)
        if payment.get("status") != "SUCCEEDED":
            raise AssertionError(f"{self.name} could not pay its deposit invoice: {payment.get('failure_reason')}")
        self.wait_balance(available_sats=before["available_sats"] + amount_sats)
        return invoice

    # --- withdrawals
    def withdraw_ln(self, amount_sats: int, memo: str = "withdrawal", key: str | None = None) -> Answer:
        """Withdraw to an invoice of the party's own node; the raw answer (200 final, 202 in flight)."""
        invoice = self.party.node.rest.addinvoice(amount_sats, memo=memo)
        return self.pay_out(invoice["payment_request"], key)

    def pay_out(self, payment_request: str, key: str | None = None) -> Answer:
        return self.party.market.withdraw_ln(self.party, payment_request, key)

    def withdraw_onchain(self, address: str, amount_sats: int, key: str | None = None) -> Answer:
        return self.party.market.withdraw_onchain(self.party, address, amount_sats, key)

    def race(self, requests: list) -> list[int]:
        """Send ``requests`` (callables returning a response) at the same moment; their status codes."""
        codes: list[int] = [0] * len(requests)
        start = threading.Barrier(len(requests))

        def go(i: int) -> None:
            start.wait()
            codes[i] = requests[i]().status_code

        threads = [threading.Thread(target=go, args=(i,), name=f"race-{i}") for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return codes


@dataclass
class HeldInvoice:
    """A hold invoice on a party's node: paying it leaves the payer's HTLC in flight until
    the party settles or cancels (how a slow or stuck withdrawal looks from the hub)."""

    node: object
    payment_hash: bytes
    preimage: bytes
    payment_request: str

    @classmethod
    def create(cls, node, amount_sats: int, memo: str = "") -> "HeldInvoice":
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        created = node.rest.add_hold_invoice(payment_hash, amount_sats, HOLD_CLTV, expiry_s=3600,
                                             memo=memo or f"held-{uuid.uuid4().hex[:8]}")
        return cls(node, payment_hash, preimage, created["payment_request"])

    def state(self) -> str:
        return self.node.rest.lookup_invoice(self.payment_hash)["state"]

    def wait_accepted(self, timeout: float = 30) -> None:
        wait_for(lambda: self.state() == "ACCEPTED", timeout=timeout, what="the hold invoice to be ACCEPTED")

    def cancel(self) -> None:
        """Fail the HTLC back (idempotent: a cancelled or vanished invoice stays so)."""
        try:
            if self.state() in ("OPEN", "ACCEPTED"):
                self.node.rest.cancel_invoice(self.payment_hash)
        except Exception:  # noqa: BLE001 - gone already: nothing is held
            pass
