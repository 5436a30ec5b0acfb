"""custodial: the buyer pays from a balance the marketplace holds (the dBay model).

Funding is the ledger itself: opening the escrow moves the price from the
buyer's available to held balance in the order's own transaction, so the
order is FUNDED at once, or not created at all (InsufficientFunds, 409).
Outcomes are ledger transfers keyed by the order (``order:<id>:outcome``),
posted in the same transaction as the transition that records them, so an
outcome and its money move commit together or not at all (I2, I3, I5).
Nothing expires on a node, so there is no guardian.

The nodes matter for the money going in and out: the worker's ``watch``
credits on-chain deposits after k confirmations and LN deposits once the hub
says SETTLED, resumes LN withdrawals still in flight (their debit stays
reserved until the hub reports a final status, I14), and batches and
confirms on-chain withdrawals.

One custody wallet belongs to one ledger: two ledgers sharing a wallet would
each see the other's coins, which is the double count reconciliation exists
to catch. Its name comes from the database (see ``wallet_name``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from sqlalchemy import select

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError
from regtest_cluster.nodes.lnd import LndError

from ...context import AppContext
from ...store.models import Order, User, utcnow
from ...store.models_ledger import (DepositAddress, LedgerAccount, LnDepositInvoice, LnWithdrawal,
                                    OnchainDeposit, OnchainWithdrawal, WithdrawalBatch)
from .. import faults, records, transitions
from ..custodial import (check_batches, custody_wallet, escrow, ledger, poll_ln_deposits, reconcile,
                         resume_withdrawals, run_withdrawal_batch, scan_deposits)
from ..custodial.reconcile import Report
from ..errors import DomainError, NodeUnavailable, ValidationFailed
from ..lifecycle import E, S
from ..orders import PPM, fee_for
from ..accounts import Principal
from ..records import OrderRecord

log = logging.getLogger("escrowlab.custodial")
WATCH_EVERY_S = 2.0
BATCH_RETRY_S = 30.0   # after bitcoind refused a batch (too few k-confirmed coins), before the next try


def wallet_name(settings) -> str:
    """The custody wallet of this marketplace's database: stable across restarts, distinct
    for every database (each test and each scenario has its own)."""
    return "custody-" + hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]


def split_parts(settings, order: OrderRecord) -> tuple[int, int, int]:
    """(buyer part, seller gross, fee) of a split ruling; the fee comes from the seller's part (I13)."""
    buyer_part = order.price_sats * (order.buyer_share_ppm or 0) // PPM
    seller_gross = order.price_sats - buyer_part
    return buyer_part, seller_gross, fee_for(settings, seller_gross)


class CustodialMode:
    name = "custodial"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.wake = lambda: None  # the worker replaces it
        self._wallet: BitcoinRpc | None = None
        self._wallet_lock = threading.Lock()
        # Serialises the node-facing cycle (scan, batch, settle) with reconciliation, so a
        # report never sees a batch half-way between the wallet and the ledger.
        self._cycle = threading.Lock()
        self._last_watch = 0.0
        self._batch_after = 0.0
        self._started_at = utcnow()  # batches left BUILDING from before it were made by a dead worker
        self._stop = threading.Event()

    @property
    def wallet(self) -> BitcoinRpc:
        """The custody wallet's client, created or loaded on first use (not at app build)."""
        if self.ctx.chain is None:
            raise NodeUnavailable("custodial accounts need the marketplace's bitcoind, and this app has none")
        with self._wallet_lock:
            if self._wallet is None:
                try:
                    self._wallet = custody_wallet(self.ctx.chain, wallet_name(self.ctx.settings))
                except RpcError as exc:
                    raise NodeUnavailable(f"bitcoind: {exc.message}") from exc
            return self._wallet

    # --- opening: the price moves from available to held, in the order's transaction
    def open(self, session, order: OrderRecord, buyer: User | Principal, funding: dict | None) -> None:
        height = self.ctx.tip()
        escrow.hold(session, order.id, buyer.id, order.price_sats)
        actor = f"user:{buyer.id}"
        transitions.apply(session, self.ctx.settings, order, E.ESCROW_OPENED, actor, height,
                          detail=f"{order.price_sats} sats moved from the buyer's balance into escrow")
        transitions.apply(session, self.ctx.settings, order, E.FUNDED, actor, height,
                          detail="held in the buyer's custodial balance")

    def expire(self, order_id: int) -> None:
        # A hold commits with the FUNDED transition, so an expired order has none; should one
        # ever exist, the buyer gets it back (idempotent by the outcome key).
        with self.ctx.db.session() as session:
            try:
                buyer_id, _amount = escrow.held(session, order_id)
            except ValidationFailed:
                return
            escrow.refund(session, order_id, buyer_id)

    # --- outcomes: one ledger transfer and its transition, in one transaction
    def drive(self, order_id: int, height: int | None) -> str:
        """Carry out a pending outcome; repeating it posts nothing twice (the outcome key)."""
        s = self.ctx.settings
        with self.ctx.db.session() as session:
            order = records.read(session, order_id)
            state = S(order.state)
            if state == S.RELEASE_PENDING:
                escrow.release(session, order.id, order.seller_id, order.price_sats, order.fee_sats)
                faults.point("custodial_outcome_uncommitted", s.fault_points)  # the transfer must roll back
                transitions.apply(session, s, order, E.RELEASED, "worker", height,
                                  detail=f"seller credited {order.price_sats - order.fee_sats} sats, "
                                         f"fee {order.fee_sats}")
            elif state == S.REFUND_PENDING:
                escrow.refund(session, order.id, order.buyer_id)
                faults.point("custodial_outcome_uncommitted", s.fault_points)
                transitions.apply(session, s, order, E.REFUNDED, "worker", height,
                                  detail=f"buyer credited {order.price_sats} sats")
            elif state == S.SPLIT_PENDING:
                buyer_part, seller_gross, fee = split_parts(s, order)
                escrow.split(session, order.id, order.buyer_id, buyer_part, order.seller_id, seller_gross, fee)
                transitions.apply(session, s, order, E.SPLIT_DONE, "worker", height,
                                  detail=f"buyer credited {buyer_part}, seller {seller_gross - fee}, fee {fee}")
            return order.state

    def guardian_due(self, session, height: int) -> list:
        return []  # a balance does not expire

    # --- the worker's lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._last_watch = 0.0  # the first tick after a (re)start resumes in-flight withdrawals (I11)
        self._started_at = utcnow()

    def stop(self) -> None:
        self._stop.set()

    def on_created(self, order_id: int) -> None:
        pass  # funded in its own transaction: nothing to watch

    def watch(self, height: int) -> None:
        if time.monotonic() - self._last_watch < WATCH_EVERY_S or self._stop.is_set() or not self.ctx.shares.leads:
            return  # (of several app processes, one passes over the ledger: shares.py)
        self._last_watch = time.monotonic()
        self.cycle()

    def cycle(self) -> None:
        """One pass over the node-facing work; each step fails alone and is retried next pass."""
        k = self.ctx.settings.custodial_confirmations
        steps = [("on-chain deposits", lambda: scan_deposits(self.ctx, self.wallet, k)),
                 ("withdrawal batch", self._batch),
                 ("batch confirmations",
                  lambda: check_batches(self.ctx, self.wallet, k, restarted_at=self._started_at))]
        if self.ctx.hub is not None:
            steps += [("LN deposits", lambda: poll_ln_deposits(self.ctx)),
                      ("LN withdrawals", lambda: resume_withdrawals(self.ctx, wait_s=0.0))]
        with self._cycle:
            for what, step in steps:
                try:
                    step()
                except (DomainError, RpcError, LndError) as exc:
                    log.warning("custodial %s: %s (retrying next pass)", what, exc)

    def _batch(self) -> None:
        if time.monotonic() < self._batch_after:
            return
        made = run_withdrawal_batch(self.ctx, self.wallet, confirmations=self.ctx.settings.custodial_confirmations)
        if made is not None and made.status == "FAILED":  # the requests stay reserved and PENDING
            log.warning("custodial withdrawal batch refused: %s (retrying in %.0f s)", made.last_error, BATCH_RETRY_S)
            self._batch_after = time.monotonic() + BATCH_RETRY_S

    def reconcile(self) -> Report:
        """The ledger against itself, the custody wallet and the hub (between two watch passes)."""
        with self._cycle:
            return reconcile(self.ctx, self.wallet, self.ctx.hub)


def ledger_view(ctx: AppContext) -> dict:
    """What the ledger claims, for the admin and the scenario oracle: every balance, each
    custodial order's postings, and the records that tie transfers to node events."""
    def legs(session, key: str) -> list[list] | None:
        posted = ledger.find(session, key)
        return None if posted is None else [[name, amount] for name, amount in posted.legs]

    with ctx.db.session(write=False) as s:
        accounts = dict(s.execute(select(LedgerAccount.name, LedgerAccount.balance)).all())
        order_ids = s.scalars(select(Order.id).where(Order.escrow_mode == CustodialMode.name).order_by(Order.id)).all()
        orders = {oid: {"hold": legs(s, f"order:{oid}:hold"), "outcome": legs(s, f"order:{oid}:outcome")}
                  for oid in order_ids}
        batches = {b.id: b for b in s.scalars(select(WithdrawalBatch))}
        return {
            "wallet": wallet_name(ctx.settings),
            "confirmations": ctx.settings.custodial_confirmations,
            "accounts": accounts,
            "orders": orders,
            "deposit_addresses": dict(s.execute(select(DepositAddress.address, DepositAddress.user_id)).all()),
            "onchain_deposits": [dict(txid=d.txid, vout=d.vout, user_id=d.user_id, address=d.address,
                                      amount_sats=d.amount_sats, status=d.status)
                                 for d in s.scalars(select(OnchainDeposit).order_by(OnchainDeposit.id))],
            "ln_deposits": [dict(payment_hash=i.payment_hash, user_id=i.user_id, amount_sats=i.amount_sats,
                                 state=i.state, credited_sats=i.credited_sats)
                            for i in s.scalars(select(LnDepositInvoice).order_by(LnDepositInvoice.id))],
            "ln_withdrawals": [withdrawal_out(w) for w in s.scalars(select(LnWithdrawal).order_by(LnWithdrawal.id))],
            "onchain_withdrawals": [
                dict(id=r.id, user_id=r.user_id, address=r.address, amount_sats=r.amount_sats, status=r.status,
                     txid=batches[r.batch_id].txid if r.batch_id in batches else None)
                for r in s.scalars(select(OnchainWithdrawal).order_by(OnchainWithdrawal.id))],
        }


def withdrawal_out(w: LnWithdrawal) -> dict:
    return dict(payment_hash=w.payment_hash, user_id=w.user_id, status=w.status, amount_sats=w.amount_sats,
                fee_limit_sats=w.fee_limit_sats, fee_sats=w.fee_sats, internal=w.internal, last_error=w.last_error)


def withdrawals_of(ctx: AppContext, user_id: int) -> tuple[list[dict], list[dict]]:
    """A user's LN withdrawals and on-chain withdrawal requests, oldest first."""
    with ctx.db.session(write=False) as s:
        ln = [withdrawal_out(w) for w in s.scalars(select(LnWithdrawal).where(LnWithdrawal.user_id == user_id)
                                                   .order_by(LnWithdrawal.id))]
        batches = {b.id: b.txid for b in s.scalars(select(WithdrawalBatch))}
        onchain = [dict(id=r.id, address=r.address, amount_sats=r.amount_sats, status=r.status,
                        txid=batches.get(r.batch_id))
                   for r in s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.user_id == user_id)
                                      .order_by(OnchainWithdrawal.id))]
    return ln, onchain
