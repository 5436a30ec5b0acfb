"""On-chain withdrawals, batched: many requests, one transaction.

A request reserves its amount (available -> inflight) at once. A batch run
claims every pending request (a status compare-and-swap, committed before the
transaction is built: I5), pays them all with one ``send`` from the custody
wallet, and moves the total from the hot wallet to ``onchain_outgoing``. The
miner fee is split equally over the outputs (``subtract_fee_from_outputs``):
each user receives their amount minus their share, and the wallet loses
exactly the sum of the amounts, so the ledger needs no fee estimate and no
rounding. Coins are spent only with k confirmations (``minconf``), so a batch
never rests on a deposit that a reorg could still remove.

``check_batches`` settles a batch once its transaction has k confirmations
(inflight and onchain_outgoing are cleared). Best effort on the unhappy paths:
a fee bump (``replaced_by_txid``) is followed to the replacement; a transaction
that lost to a confirmed conflict (negative confirmations) fails the batch and
returns every reservation. A transaction that merely vanished from the mempool
is left alone (it may still confirm), and a batch whose ``send`` was cut off
without an answer is looked for in the wallet by its outputs (among the
transactions no other batch recorded), and given back to the queue if the
wallet never made it. A batch left BUILDING by a process that died (crashed
between the claim and the send) is given back soon after the worker restarts,
not after the long grace a lost answer gets: its sender is gone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError, sats

from ...context import AppContext
from ...store.models import utcnow
from ...store.models_ledger import OnchainWithdrawal, WithdrawalBatch
from .. import faults
from ..errors import Conflict, ValidationFailed
from . import ledger
from .deposits import DEFAULT_CONFIRMATIONS
from .ledger import HOT_WALLET, ONCHAIN_OUTGOING, user_account

DEFAULT_MIN_WITHDRAWAL_SATS = 10_000   # well above dust plus a fee share at regtest fee rates
DEFAULT_MAX_OUTPUTS = 200
ORPHAN_GRACE_S = 10.0   # after a restart, for the dead sender's last RPC (if any) to land in the wallet


@dataclass(frozen=True)
class RequestView:
    id: int
    user_id: int
    address: str
    amount_sats: int
    status: str
    batch_id: int | None


@dataclass(frozen=True)
class BatchView:
    id: int
    txid: str | None
    status: str
    total_sats: int
    miner_fee_sats: int
    confirmations: int
    request_ids: tuple[int, ...]
    last_error: str | None = None


def _request_view(r: OnchainWithdrawal) -> RequestView:
    return RequestView(r.id, r.user_id, r.address, r.amount_sats, r.status, r.batch_id)


def request_onchain_withdrawal(ctx: AppContext, user_id: int, address: str, amount_sats: int, *,
                               key: str | None = None, wallet: BitcoinRpc | None = None,
                               min_amount_sats: int = DEFAULT_MIN_WITHDRAWAL_SATS) -> RequestView:
    """Reserve ``amount_sats`` for a withdrawal to ``address`` in the next batch.

    ``key`` makes the request idempotent (scoped to the user): the same key and content
    return the first request, other content is a Conflict. With ``wallet`` the address
    is checked by bitcoind (right network, valid checksum).
    """
    if amount_sats < min_amount_sats:
        raise ValidationFailed(f"withdrawals start at {min_amount_sats} sats, got {amount_sats}",
                               field="amount_sats")
    if wallet is not None and not wallet.validateaddress(address).get("isvalid"):
        raise ValidationFailed(f"not a valid address on this network: {address}", field="address")
    request_key = f"{user_id}:{key or uuid.uuid4().hex}"
    with ctx.db.session() as s:
        existing = s.scalar(select(OnchainWithdrawal).where(OnchainWithdrawal.request_key == request_key))
        if existing is not None:
            if (existing.address, existing.amount_sats) != (address, amount_sats):
                raise Conflict(f"withdrawal key {key!r} was used for another withdrawal", key=key)
            return _request_view(existing)
        posted = ledger.transfer(s, f"onchain_out:{request_key}:reserve", "onchain_withdraw_reserve",
                                 [(user_account(user_id, "available"), -amount_sats),
                                  (user_account(user_id, "inflight"), amount_sats)], memo=address)
        if posted.replayed:  # a concurrent twin committed between our read and our transfer
            return _request_view(s.scalar(select(OnchainWithdrawal)
                                          .where(OnchainWithdrawal.request_key == request_key)))
        row = OnchainWithdrawal(request_key=request_key, user_id=user_id, address=address,
                                amount_sats=amount_sats, status="PENDING")
        s.add(row)
        s.flush()
        return _request_view(row)


def run_withdrawal_batch(ctx: AppContext, wallet: BitcoinRpc, *, confirmations: int = DEFAULT_CONFIRMATIONS,
                         max_outputs: int = DEFAULT_MAX_OUTPUTS,
                         fee_rate_sat_vb: int | None = None) -> BatchView | None:
    """Pay every pending request in one transaction; None when nothing is pending.

    Two requests to one address go in different batches (an address is one output).
    If bitcoind refuses (e.g. not enough k-confirmed coins) the requests go back to
    PENDING, still reserved, and the batch is FAILED with bitcoind's message.
    """
    batch_id, outputs = _claim(ctx, max_outputs)
    if batch_id is None:
        return None
    faults.point("after_batch_claim", ctx.settings.fault_points)  # reserved and claimed, nothing sent
    try:
        sent = wallet.send([(a, amt) for _rid, a, amt in outputs], minconf=confirmations,
                           subtract_fee_from=list(range(len(outputs))), fee_rate_sat_vb=fee_rate_sat_vb)
    except RpcError as exc:
        if exc.code == -1:  # no answer: it may have been broadcast; check_batches looks for it
            _set(ctx, batch_id, last_error=exc.message)
            return batch(ctx, batch_id)
        return _unclaim(ctx, batch_id, exc.message)
    faults.point("after_batch_sent", ctx.settings.fault_points)  # paid on the chain, not recorded
    return _broadcast(ctx, wallet, batch_id, sent["txid"])


def _claim(ctx: AppContext, max_outputs: int) -> tuple[int | None, list[tuple[int, str, int]]]:
    with ctx.db.session() as s:
        pending = s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.status == "PENDING")
                            .order_by(OnchainWithdrawal.id)).all()
        chosen, addresses = [], set()
        for r in pending:
            if r.address not in addresses and len(chosen) < max_outputs:
                chosen.append(r)
                addresses.add(r.address)
        if not chosen:
            return None, []
        row = WithdrawalBatch(status="BUILDING", total_sats=sum(r.amount_sats for r in chosen))
        s.add(row)
        s.flush()
        claimed = s.execute(update(OnchainWithdrawal)
                            .where(OnchainWithdrawal.id.in_([r.id for r in chosen]),
                                   OnchainWithdrawal.status == "PENDING")
                            .values(status="BATCHED", batch_id=row.id)
                            .execution_options(synchronize_session=False))
        if claimed.rowcount != len(chosen):
            raise Conflict("another batch run claimed some of these withdrawals; try again")
        return row.id, [(r.id, r.address, r.amount_sats) for r in chosen]


def _unclaim(ctx: AppContext, batch_id: int, error: str) -> BatchView:
    with ctx.db.session() as s:
        s.execute(update(OnchainWithdrawal).where(OnchainWithdrawal.batch_id == batch_id)
                  .values(status="PENDING", batch_id=None).execution_options(synchronize_session=False))
        b = s.get(WithdrawalBatch, batch_id)
        b.status, b.last_error = "FAILED", error
    return batch(ctx, batch_id)


def _broadcast(ctx: AppContext, wallet: BitcoinRpc, batch_id: int, txid: str) -> BatchView:
    tx = wallet.gettransaction(txid)
    vouts = {d["address"]: int(d["vout"]) for d in tx.get("details", []) if d.get("category") == "send"}
    with ctx.db.session() as s:
        b = s.get(WithdrawalBatch, batch_id)
        if b.status != "BUILDING":
            return _batch_view(s, b)
        ledger.transfer(s, f"batch:{batch_id}:broadcast", "onchain_batch_broadcast",
                        [(HOT_WALLET, b.total_sats), (ONCHAIN_OUTGOING, -b.total_sats)], memo=txid)
        b.txid, b.status, b.miner_fee_sats = txid, "BROADCAST", -sats(tx.get("fee", 0))
        for r in s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.batch_id == batch_id)):
            r.status, r.vout = "BROADCAST", vouts.get(r.address)
        return _batch_view(s, b)


def check_batches(ctx: AppContext, wallet: BitcoinRpc, confirmations: int = DEFAULT_CONFIRMATIONS,
                  building_grace_s: float = 300.0, restarted_at: datetime | None = None,
                  orphan_grace_s: float = ORPHAN_GRACE_S) -> list[BatchView]:
    """Settle batches with k confirmations, follow fee bumps, fail conflicted ones.

    A batch left BUILDING (its run crashed, or lost bitcoind's answer) is looked for in
    the wallet; once ``building_grace_s`` has passed without the wallet knowing such a
    transaction, it was never made (the wallet records a transaction before it
    broadcasts it), so its requests go back to PENDING for the next run. A batch made
    before ``restarted_at`` (when this worker started: its maker died or stopped) waits
    only ``orphan_grace_s`` after the restart, since no RPC of a dead process is pending
    longer than that.
    """
    with ctx.db.session(write=False) as s:
        open_batches = s.execute(select(WithdrawalBatch.id, WithdrawalBatch.txid, WithdrawalBatch.status,
                                        WithdrawalBatch.created_at)
                                 .where(WithdrawalBatch.status.in_(("BUILDING", "BROADCAST")))
                                 .order_by(WithdrawalBatch.id)).all()
    views = []
    for batch_id, txid, status, created_at in open_batches:
        if status == "BUILDING":
            found = _find_sent(ctx, wallet, batch_id)
            if found:
                views.append(_broadcast(ctx, wallet, batch_id, found))
            elif _age_s(created_at) > building_grace_s or _orphaned(created_at, restarted_at, orphan_grace_s):
                views.append(_unclaim(ctx, batch_id, "never broadcast: no wallet transaction pays this batch"))
            continue
        tx = wallet.gettransaction(txid)
        while tx.get("replaced_by_txid"):
            tx = wallet.gettransaction(tx["replaced_by_txid"])
        confs = int(tx.get("confirmations", 0))
        if confs >= confirmations:
            views.append(_settle(ctx, batch_id, tx["txid"], confs))
        elif confs < 0:
            views.append(_fail(ctx, batch_id, tx["txid"], f"conflicted: {tx.get('walletconflicts')}"))
        else:
            _set(ctx, batch_id, txid=tx["txid"], confirmations=confs)
            views.append(batch(ctx, batch_id))
    return views


def _orphaned(created_at: datetime, restarted_at: datetime | None, grace_s: float) -> bool:
    return restarted_at is not None and created_at < restarted_at and _age_s(restarted_at) > grace_s


def _find_sent(ctx: AppContext, wallet: BitcoinRpc, batch_id: int) -> str | None:
    """A wallet transaction paying exactly this batch's outputs (after a lost ``send`` answer).
    Transactions another batch recorded are not candidates: an earlier batch to the same
    addresses would otherwise be taken for this one (its txid is unique, so the batch
    stayed BUILDING for good, retried on every pass)."""
    paid: dict[str, set[str]] = {}
    for t in wallet.listsinceblock("", 1, include_removed=False).get("transactions", []):
        if t.get("category") == "send" and int(t.get("confirmations", 0)) >= 0:
            paid.setdefault(t["txid"], set()).add(t.get("address"))
    with ctx.db.session(write=False) as s:
        want = {r.address for r in s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.batch_id == batch_id))}
        recorded = set(s.scalars(select(WithdrawalBatch.txid).where(WithdrawalBatch.txid.in_(list(paid)))))
    return next((txid for txid, addrs in paid.items() if addrs == want and txid not in recorded), None)


def _settle(ctx: AppContext, batch_id: int, txid: str, confs: int) -> BatchView:
    with ctx.db.session() as s:
        b = s.get(WithdrawalBatch, batch_id)
        if b.status == "BROADCAST":
            requests = s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.batch_id == batch_id)).all()
            legs = [(user_account(r.user_id, "inflight"), -r.amount_sats) for r in requests]
            ledger.transfer(s, f"batch:{batch_id}:settle", "onchain_batch_settle",
                            legs + [(ONCHAIN_OUTGOING, b.total_sats)], memo=txid)
            for r in requests:
                r.status = "CONFIRMED"
            b.status = "CONFIRMED"
        b.txid, b.confirmations = txid, confs
        return _batch_view(s, b)


def _fail(ctx: AppContext, batch_id: int, txid: str, reason: str) -> BatchView:
    with ctx.db.session() as s:
        b = s.get(WithdrawalBatch, batch_id)
        if b.status == "BROADCAST":
            requests = s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.batch_id == batch_id)).all()
            legs = [(HOT_WALLET, -b.total_sats), (ONCHAIN_OUTGOING, b.total_sats)]
            for r in requests:
                legs += [(user_account(r.user_id, "inflight"), -r.amount_sats),
                         (user_account(r.user_id, "available"), r.amount_sats)]
                r.status = "FAILED"
            ledger.transfer(s, f"batch:{batch_id}:fail", "onchain_batch_fail", legs, memo=txid)
            b.status, b.last_error = "FAILED", reason
        return _batch_view(s, b)


def _age_s(moment: datetime) -> float:
    return (utcnow() - moment).total_seconds()


def _set(ctx: AppContext, batch_id: int, **values) -> None:
    with ctx.db.session() as s:
        s.execute(update(WithdrawalBatch).where(WithdrawalBatch.id == batch_id).values(**values))


def _batch_view(s, b: WithdrawalBatch) -> BatchView:
    ids = tuple(s.scalars(select(OnchainWithdrawal.id).where(OnchainWithdrawal.batch_id == b.id)
                          .order_by(OnchainWithdrawal.id)).all())
    return BatchView(b.id, b.txid, b.status, b.total_sats, b.miner_fee_sats, b.confirmations, ids, b.last_error)


def batch(ctx: AppContext, batch_id: int) -> BatchView:
    with ctx.db.session(write=False) as s:
        return _batch_view(s, s.get(WithdrawalBatch, batch_id))


def withdrawal_requests(ctx: AppContext, user_id: int) -> list[RequestView]:
    with ctx.db.session(write=False) as s:
        rows = s.scalars(select(OnchainWithdrawal).where(OnchainWithdrawal.user_id == user_id)
                         .order_by(OnchainWithdrawal.id)).all()
        return [_request_view(r) for r in rows]
