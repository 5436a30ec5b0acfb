"""On-chain deposits: one address per user in the custody wallet, credited after k confirmations.

The scan is ``listsinceblock(cursor, target_confirmations=k)``. Its ``lastblock``
is the block k deep, so every output with fewer than k confirmations is listed
again by the next scan; an output is credited the first time it is seen with
at least k, once per (txid, vout) (a unique row and the transfer key
``deposit:<txid>:<vout>`` both guard it). Outputs seen earlier are kept as SEEN;
a conflicted one (negative confirmations, e.g. replaced after a reorg) becomes
GONE and is never credited. listsinceblock leaves conflicted transactions out,
so pending outputs it does not list are looked up one by one. A reorg deeper than k after crediting is out of
scope: it is flagged on the row (``reorged_after_credit``) and shows up in
reconcile as a hot-wallet mismatch, but the credit is not reversed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from regtest_cluster.nodes.bitcoind import BitcoinRpc, btc, sats

from ...context import AppContext
from ...store.models import utcnow
from ...store.models_ledger import ChainCursor, DepositAddress, OnchainDeposit
from . import ledger
from .ledger import HOT_WALLET, user_account

log = logging.getLogger(__name__)

DEFAULT_CONFIRMATIONS = 3
CURSOR = "deposits"


@dataclass(frozen=True)
class DepositView:
    txid: str
    vout: int
    user_id: int
    amount_sats: int
    confirmations: int
    status: str


def custody_wallet(rpc: BitcoinRpc, name: str = "custody") -> BitcoinRpc:
    """The custody descriptor wallet's client; creates or loads it on first use (several app
    processes may at once)."""
    return rpc.open_wallet(name)


def deposit_address(ctx: AppContext, wallet: BitcoinRpc, user_id: int) -> str:
    """The user's deposit address, made on first call and the same ever after.

    The node call happens outside the write session (no lock held across it).
    Two first calls racing both ask bitcoind for an address; the loser's is never
    shown to anyone and stays labelled ``user:<id>`` in the wallet, so it is
    harmless (and recoverable from the label should it ever be paid).
    """
    with ctx.db.session(write=False) as s:
        known = s.scalar(select(DepositAddress.address).where(DepositAddress.user_id == user_id))
    if known:
        return known
    address = wallet.getnewaddress(label=f"user:{user_id}", address_type="bech32")
    path = wallet.getaddressinfo(address).get("hdkeypath", "")
    try:
        with ctx.db.session() as s:
            s.add(DepositAddress(user_id=user_id, address=address, hd_path=path))
    except IntegrityError:
        with ctx.db.session(write=False) as s:
            return s.scalar(select(DepositAddress.address).where(DepositAddress.user_id == user_id))
    return address


def deposit_addresses(ctx: AppContext) -> dict[str, int]:
    """address -> user id, for every deposit address handed out."""
    with ctx.db.session(write=False) as s:
        return dict(s.execute(select(DepositAddress.address, DepositAddress.user_id)).all())


def scan_deposits(ctx: AppContext, wallet: BitcoinRpc,
                  confirmations: int = DEFAULT_CONFIRMATIONS) -> list[DepositView]:
    """Record deposits seen since the last scan and credit those with >= k confirmations.

    Returns what this scan touched (credited now, still pending, or gone).
    """
    if confirmations < 1:
        raise ValueError("deposits need at least one confirmation")
    with ctx.db.session(write=False) as s:
        cursor = s.get(ChainCursor, CURSOR)
        since = cursor.block_hash if cursor else ""
    listing = wallet.listsinceblock(since, confirmations)
    owners = deposit_addresses(ctx)
    receives = [tx for tx in listing.get("transactions", [])
                if tx.get("category") == "receive" and tx.get("address") in owners]
    receives += _pending_not_listed(ctx, wallet, {(tx["txid"], int(tx["vout"])) for tx in receives})
    touched: list[DepositView] = []
    with ctx.db.session() as s:
        for tx in listing.get("removed", []):
            if tx.get("category") == "receive" and tx.get("address") in owners:
                _removed(s, tx)
        for tx in receives:
            touched.append(_observe(s, tx, owners[tx["address"]], confirmations))
        row = s.get(ChainCursor, CURSOR)
        if row is None:
            s.add(ChainCursor(name=CURSOR, block_hash=listing["lastblock"]))
        else:
            row.block_hash = listing["lastblock"]
    return touched


def _pending_not_listed(ctx: AppContext, wallet: BitcoinRpc, listed: set[tuple[str, int]]) -> list[dict]:
    """Pending deposits the listing left out: listsinceblock omits conflicted transactions
    (negative confirmations), which is exactly how a deposit replaced after a reorg looks."""
    with ctx.db.session(write=False) as s:
        pending = s.execute(select(OnchainDeposit.txid, OnchainDeposit.vout, OnchainDeposit.address,
                                   OnchainDeposit.amount_sats).where(OnchainDeposit.status == "SEEN")).all()
    found = []
    for txid, vout, address, amount in pending:
        if (txid, vout) not in listed:
            confs = int(wallet.gettransaction(txid).get("confirmations", 0))
            found.append({"txid": txid, "vout": vout, "address": address, "amount": btc(amount),
                          "confirmations": confs})
    return found


def _row(s, txid: str, vout: int) -> OnchainDeposit | None:
    return s.scalar(select(OnchainDeposit).where(OnchainDeposit.txid == txid, OnchainDeposit.vout == vout))


def _removed(s, tx: dict) -> None:
    row = _row(s, tx["txid"], int(tx["vout"]))
    if row is None:
        return
    if row.status == "CREDITED":
        row.reorged_after_credit = True
        log.warning("credited deposit %s:%s left the chain (reorg deeper than k)", row.txid, row.vout)
    else:
        row.confirmations = 0


def _observe(s, tx: dict, user_id: int, k: int) -> DepositView:
    txid, vout, confs = tx["txid"], int(tx["vout"]), int(tx.get("confirmations", 0))
    amount = sats(tx["amount"])
    row = _row(s, txid, vout)
    if row is None:
        row = OnchainDeposit(txid=txid, vout=vout, user_id=user_id, address=tx["address"],
                             amount_sats=amount, confirmations=confs, status="SEEN")
        s.add(row)
        s.flush()
    if row.status == "CREDITED":
        if confs > 0:
            row.confirmations = confs
    elif confs < 0:
        row.status, row.confirmations = "GONE", confs  # a conflicting transaction won
    elif confs >= k:
        ledger.transfer(s, f"deposit:{txid}:{vout}", "deposit_onchain",
                        [(user_account(user_id, "available"), amount), (HOT_WALLET, -amount)],
                        memo=f"{confs} confirmations")
        row.status, row.confirmations, row.credited_at = "CREDITED", confs, utcnow()
    else:
        row.status, row.confirmations = "SEEN", confs  # a GONE output can come back after a reorg
    return DepositView(txid, vout, user_id, amount, row.confirmations, row.status)


def deposits_of(ctx: AppContext, user_id: int) -> list[DepositView]:
    with ctx.db.session(write=False) as s:
        rows = s.scalars(select(OnchainDeposit).where(OnchainDeposit.user_id == user_id)
                         .order_by(OnchainDeposit.id)).all()
        return [DepositView(r.txid, r.vout, r.user_id, r.amount_sats, r.confirmations, r.status) for r in rows]
