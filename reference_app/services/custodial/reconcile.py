"""Reconciliation: the ledger against itself and against node truth (I1, I11).

What is compared (all integer sats; ``expected`` is the reference side, ``actual``
the ledger's figure):

1. Ledger integrity: every cached balance against the sum of its entries, every
   transfer sums to zero, no floor-zero account is negative (``ledger.check``).
   Then liabilities (users' available + held + inflight, plus fees) against
   assets (hot wallet + on-chain outgoing + hub LN holdings): equal by
   construction, so a difference means rows were changed outside ``transfer``.
2. Hot wallet: ``sys:hot_wallet`` holdings against the custody wallet's
   ``getbalances().mine.trusted`` (confirmed coins plus our own unconfirmed
   change) minus the deposit outputs in it that are not credited yet (a deposit
   below k confirmations, or one the scan has not reached: run ``scan_deposits``
   first, or it shows as a surplus). Untrusted pending and immature coins are
   not counted.
3. On-chain outgoing: for every broadcast batch not yet settled, the wallet's
   own view of its transaction (sum of its send details plus fee, which is the
   batch total since fees are subtracted from outputs) must equal the batch
   total, and the transaction must not be conflicted; their sum must equal
   ``sys:onchain_outgoing``.
4. Hub LN: per payment hash, never from the hub's channel total (the hub's
   balance also moves with hold-invoice escrows and its own funds). Each
   custodial deposit invoice SETTLED on the node must be credited with
   ``floor(amt_paid_msat / 1000)``; each custodial withdrawal SUCCEEDED on the
   node must be settled in the ledger as value + ``ceil(fee_msat / 1000)``;
   FAILED on the node must not be settled; IN_FLIGHT on the node must still be
   reserved. Sum(node-credited) - sum(node-paid) must equal ``sys:hub_ln``
   holdings. The same rounding rules are used on both sides, so no tolerance
   is applied; sub-sat remainders stay with the hub and are not custody money.
   Finally the hub's local channel balance must cover those holdings (solvency).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from regtest_cluster.nodes.bitcoind import BitcoinRpc, sats
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.nodes.lnd_grpc import LndGrpc

from ...context import AppContext
from ...store.models_ledger import (LedgerAccount, LnDepositInvoice, LnWithdrawal, OnchainDeposit,
                                    WithdrawalBatch)
from ..holds import node_call
from . import ledger
from .deposits import deposit_addresses
from .ledger import FEES, HOT_WALLET, HUB_LN, ONCHAIN_OUTGOING, USER_KINDS, Mismatch


@dataclass
class Report:
    totals: dict[str, int]
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        lines = [f"{k}: {v}" for k, v in self.totals.items()]
        lines += [f"MISMATCH {m.account}: expected {m.expected}, actual {m.actual} ({m.detail})"
                  for m in self.mismatches]
        return "\n".join(lines)


def reconcile(ctx: AppContext, rpc: BitcoinRpc, hub: LndGrpc | None = None) -> Report:
    """Compare the ledger with itself, the custody wallet (``rpc``) and the hub."""
    hub = hub or ctx.hub
    with ctx.db.session(write=False) as s:
        mismatches = ledger.check(s)
        balances = ledger.all_balances(s)
        kinds = dict(s.execute(select(LedgerAccount.name, LedgerAccount.kind)).all())
        totals = {f"users_{k}": sum(b for n, b in balances.items() if kinds[n] == k) for k in USER_KINDS}
        totals["fees"] = balances.get(FEES, 0)
        totals["liabilities"] = sum(totals.values())
        for name in (HOT_WALLET, ONCHAIN_OUTGOING, HUB_LN):
            totals[name.removeprefix("sys:")] = -balances.get(name, 0)
        totals["assets"] = totals["hot_wallet"] + totals["onchain_outgoing"] + totals["hub_ln"]
        if totals["liabilities"] != totals["assets"]:
            mismatches.append(Mismatch("ledger:total", totals["assets"], totals["liabilities"],
                                       "liabilities differ from assets"))
        credited = set(s.execute(select(OnchainDeposit.txid, OnchainDeposit.vout)
                                 .where(OnchainDeposit.status == "CREDITED")).all())
        batches = s.execute(select(WithdrawalBatch.id, WithdrawalBatch.txid, WithdrawalBatch.total_sats)
                            .where(WithdrawalBatch.status == "BROADCAST")).all()
        invoices = s.execute(select(LnDepositInvoice.payment_hash, LnDepositInvoice.state,
                                    LnDepositInvoice.credited_sats)).all()
        withdrawals = s.execute(select(LnWithdrawal.payment_hash, LnWithdrawal.status, LnWithdrawal.amount_sats,
                                       LnWithdrawal.fee_sats)
                                .where(LnWithdrawal.internal.is_(False))).all()

    totals.update(_hot_wallet(ctx, rpc, credited, totals["hot_wallet"], mismatches))
    totals.update(_outgoing(rpc, batches, totals["onchain_outgoing"], mismatches))
    if hub is not None:
        totals.update(_hub(hub, invoices, withdrawals, totals["hub_ln"], mismatches))
    return Report(totals, mismatches)


def _hot_wallet(ctx: AppContext, rpc: BitcoinRpc, credited: set, ledger_holdings: int,
                mismatches: list[Mismatch]) -> dict[str, int]:
    trusted = sats(rpc.getbalances()["mine"]["trusted"])
    ours = deposit_addresses(ctx)
    uncredited = sum(sats(u["amount"]) for u in rpc.listunspent(0)
                     if u.get("address") in ours and (u["txid"], int(u["vout"])) not in credited
                     and (int(u.get("confirmations", 0)) > 0 or u.get("safe")))
    node = trusted - uncredited
    if node != ledger_holdings:
        mismatches.append(Mismatch(HOT_WALLET, node, ledger_holdings,
                                   f"custody wallet trusted {trusted} - uncredited deposits {uncredited}"))
    return {"node_wallet_trusted": trusted, "node_uncredited_deposits": uncredited}


def _outgoing(rpc: BitcoinRpc, batches, ledger_holdings: int, mismatches: list[Mismatch]) -> dict[str, int]:
    node_total = 0
    for batch_id, txid, total in batches:
        tx = rpc.gettransaction(txid)
        while tx.get("replaced_by_txid"):
            tx = rpc.gettransaction(tx["replaced_by_txid"])
        sent = -sum(sats(d["amount"]) for d in tx.get("details", []) if d.get("category") == "send")
        node = sent - sats(tx.get("fee", 0))
        if int(tx.get("confirmations", 0)) < 0:
            mismatches.append(Mismatch(f"batch:{batch_id}", total, 0, f"transaction {tx['txid']} is conflicted"))
            node = 0
        elif node != total:
            mismatches.append(Mismatch(f"batch:{batch_id}", node, total, f"transaction {tx['txid']} pays {node}"))
        node_total += node
    if node_total != ledger_holdings:
        mismatches.append(Mismatch(ONCHAIN_OUTGOING, node_total, ledger_holdings, "unsettled batches on the node"))
    return {"node_onchain_outgoing": node_total}


def _hub(hub: LndGrpc, invoices, withdrawals, ledger_holdings: int, mismatches: list[Mismatch]) -> dict[str, int]:
    node_in = 0
    for payment_hash, state, credited_sats in invoices:
        try:
            invoice = node_call(hub.lookup_invoice, bytes.fromhex(payment_hash))
        except LndError as exc:  # a vanished invoice was cancelled (and garbage-collected)
            if "unable to locate invoice" not in exc.message:
                raise
            invoice = {"state": "CANCELED"}
        paid = int(invoice.get("amt_paid_msat", 0) or 0) // 1000 if invoice.get("state") == "SETTLED" else 0
        node_in += paid
        ledger_in = credited_sats if state == "CREDITED" else 0
        if paid != ledger_in:
            mismatches.append(Mismatch(f"ln_invoice:{payment_hash}", paid, ledger_in,
                                       f"node {invoice.get('state')}, ledger {state}"))
    payments = {p["payment_hash"]: p for p in node_call(hub.listpayments)}
    node_out = 0
    for payment_hash, status, amount, fee in withdrawals:
        p = payments.get(payment_hash, {})
        node_status = p.get("status", "UNKNOWN")
        spent = 0
        if node_status == "SUCCEEDED":
            spent = int(p.get("value_msat", 0)) // 1000 + -(-int(p.get("fee_msat", 0) or 0) // 1000)
        node_out += spent
        ledger_out = amount + fee if status == "SUCCEEDED" else 0
        reserved_ok = node_status not in ("IN_FLIGHT",) or status in ("RESERVED", "IN_FLIGHT")
        if spent != ledger_out or not reserved_ok:
            mismatches.append(Mismatch(f"ln_withdrawal:{payment_hash}", spent, ledger_out,
                                       f"node {node_status}, ledger {status}"))
    node = node_in - node_out
    if node != ledger_holdings:
        mismatches.append(Mismatch(HUB_LN, node, ledger_holdings, f"hub settled {node_in} in, paid {node_out} out"))
    local = int(node_call(hub.channelbalance).get("local_balance", {}).get("sat", 0))
    if local < ledger_holdings:
        mismatches.append(Mismatch("hub:solvency", ledger_holdings, local,
                                   "hub channel balance below custody LN holdings"))
    return {"node_hub_ln_custody": node, "node_hub_local_balance": local}
