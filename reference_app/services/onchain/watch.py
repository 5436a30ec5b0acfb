"""Watching escrow addresses, and what the chain says about their funding.

All escrows share one watch-only descriptor wallet (no private keys, blank). An escrow's
descriptor is imported before its address is shown to the buyer: the import uses
timestamp "now", so bitcoind rescans only its two-hour timestamp window (on regtest, where
every block is recent, that is the whole chain), and an older payment would be missed.

Funding is classified against the price the buyer owes, counting UTXOs with at least
``min_conf`` (k) confirmations as confirmed. What the app does in each case:

====================  ===================================================================
status                policy
====================  ===================================================================
``none``              Nothing arrived (not even in the mempool): keep waiting; at the
                      funding deadline the order EXPIRES.
``pending``           Payment(s) seen, none buried k deep yet: keep waiting, not funded.
``exact``             One UTXO, k confs, the price: FUNDED.
``overpaid``          One UTXO, k confs, more than the price: FUNDED; the excess goes
                      back to the buyer as an output of the release/refund spend.
``underpaid``         One UTXO, k confs, less than the price: not funded. The buyer may
                      top up (which makes it ``double``); at the deadline, refund what
                      arrived (``refund`` spends whatever the UTXOs hold).
``double``            Several UTXOs (a top-up, or paid twice): FUNDED once the confirmed
                      total covers the price. Every confirmed UTXO is an input of the
                      release/refund spend, and all above the price goes back to the buyer.
``reorged``           A UTXO seen with confirmations before now has none, or is gone
                      without a confirmed spend: roll back to unfunded (I17) and wait
                      again; the timeout's N restarts from the new confirmation.
``spent``             A UTXO seen before was spent by a confirmed-or-pending transaction
                      (our release/refund): the escrow is closing. UTXOs still listed are
                      late payments: refund them to the buyer. Should the spend vanish
                      (reorged and dropped), the UTXOs show again: broadcast it again.
====================  ===================================================================

Spends take only confirmed (k-deep) UTXOs, so a later, unconfirmed payment is left out and
shows up after the spend (status ``spent``, still listed) to be refunded.

Pass the previous observation as ``previous``: ``reorged`` and ``spent`` can only be told
from ``none`` by remembering what was there before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Iterable, Sequence

from regtest_cluster.nodes.bitcoind import BitcoinRpc, sats

from .errors import WatchFailed
from .script import EscrowScript

WATCH_WALLET = "escrow-watch"


class FundingStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    EXACT = "exact"
    OVERPAID = "overpaid"
    UNDERPAID = "underpaid"
    DOUBLE = "double"
    REORGED = "reorged"
    SPENT = "spent"


@dataclass(frozen=True)
class Utxo:
    txid: str
    vout: int
    amount_sats: int
    confirmations: int

    @property
    def outpoint(self) -> str:
        return f"{self.txid}:{self.vout}"


@dataclass(frozen=True)
class Funding:
    """One observation of an escrow address. Keep it: it is the next call's ``previous``."""

    address: str
    expected_sats: int
    min_conf: int
    status: FundingStatus
    utxos: tuple[Utxo, ...]                 # unspent now, any confirmations
    lost: tuple[str, ...] = field(default=())   # outpoints a reorg took (status reorged)
    spent: tuple[str, ...] = field(default=())  # outpoints spent since ``previous``

    @property
    def total_sats(self) -> int:
        return sum(u.amount_sats for u in self.utxos)

    @property
    def confirmed_sats(self) -> int:
        return sum(u.amount_sats for u in self.spendable)

    @property
    def funded(self) -> bool:
        """Whether the order may move to FUNDED (I9: k confirmations for the full amount)."""
        return (self.status in (FundingStatus.EXACT, FundingStatus.OVERPAID, FundingStatus.DOUBLE)
                and self.confirmed_sats >= self.expected_sats)

    @property
    def spendable(self) -> tuple[Utxo, ...]:
        """The UTXOs a spend takes: k-deep ones only. A spend resting on an unconfirmed
        payment would die with it if the buyer double-spent that payment."""
        return tuple(u for u in self.utxos if u.confirmations >= self.min_conf)

    @property
    def excess_sats(self) -> int:
        """What a release returns to the buyer: everything confirmed above the price."""
        return max(0, self.confirmed_sats - self.expected_sats)


def open_watch_wallet(rpc: BitcoinRpc, name: str = WATCH_WALLET) -> BitcoinRpc:
    """The shared watch-only wallet, created or loaded on first use; idempotent."""
    return rpc.open_wallet(name, disable_private_keys=True, blank=True)


def watch(watch_rpc: BitcoinRpc, *escrows: EscrowScript) -> None:
    """Import escrow descriptors into the watch-only wallet, in one call (one rescan of the
    recent window, however many escrows). Call before the buyer sees the address."""
    if not escrows:
        return
    results = watch_rpc.importdescriptors([{"desc": e.descriptor, "timestamp": "now"} for e in escrows])
    failed = [(e.address, r.get("error", {}).get("message", r)) for e, r in zip(escrows, results)
              if not r.get("success")]
    if failed:
        raise WatchFailed(f"wallet {watch_rpc.wallet!r} refused {len(failed)} escrow descriptor(s); "
                          f"first: {failed[0][0]}: {failed[0][1]}")


def _utxos(rows: Iterable[dict]) -> dict[str, list[Utxo]]:
    by_address: dict[str, list[Utxo]] = {}
    for row in rows:
        utxo = Utxo(row["txid"], row["vout"], sats(row["amount"]), row["confirmations"])
        by_address.setdefault(row["address"], []).append(utxo)
    return by_address


def _classify(watch_rpc: BitcoinRpc, address: str, utxos: list[Utxo], expected_sats: int, min_conf: int,
              previous: Funding | None) -> Funding:
    utxos = sorted(utxos, key=lambda u: (u.txid, u.vout))
    now = {u.outpoint: u for u in utxos}
    lost: list[str] = []
    # Once spent, stays spent (unless the outpoint shows unspent again: the spend vanished).
    spent = [o for o in previous.spent if o not in now] if previous else []
    for before in previous.utxos if previous else ():
        if before.confirmations < 1:
            continue  # never confirmed: its disappearance is a mempool matter, not a reorg
        current = now.get(before.outpoint)
        if current is not None:
            if current.confirmations < 1:
                lost.append(before.outpoint)
        elif watch_rpc.gettransaction(before.txid)["confirmations"] >= 1:
            spent.append(before.outpoint)  # funding still confirmed: the output was spent
        else:
            lost.append(before.outpoint)
    confirmed = [u for u in utxos if u.confirmations >= min_conf]
    total = sum(u.amount_sats for u in confirmed)
    if lost:
        status = FundingStatus.REORGED
    elif spent:
        status = FundingStatus.SPENT
    elif not utxos:
        status = FundingStatus.NONE
    elif not confirmed:
        status = FundingStatus.PENDING
    elif len(utxos) > 1:
        status = FundingStatus.DOUBLE
    elif total == expected_sats:
        status = FundingStatus.EXACT
    else:
        status = FundingStatus.OVERPAID if total > expected_sats else FundingStatus.UNDERPAID
    return Funding(address=address, expected_sats=expected_sats, min_conf=min_conf, status=status,
                   utxos=tuple(utxos), lost=tuple(lost), spent=tuple(spent))


def funding(watch_rpc: BitcoinRpc, escrow: EscrowScript, expected_sats: int, min_conf: int,
            previous: Funding | None = None) -> Funding:
    """What the chain holds at the escrow's address now, classified (see the module docstring)."""
    rows = watch_rpc.listunspent(0, addresses=[escrow.address])
    return _classify(watch_rpc, escrow.address, _utxos(rows).get(escrow.address, []), expected_sats,
                     min_conf, previous)


def fundings(watch_rpc: BitcoinRpc, expected: Sequence[tuple[EscrowScript, int]], min_conf: int,
             previous: dict[str, Funding] | None = None) -> dict[str, Funding]:
    """``funding`` for many escrows with one listunspent; keyed by address. For the app's
    reconciler and the benchmark, which look at every open escrow after each block."""
    if not expected:
        return {}
    rows = _utxos(watch_rpc.listunspent(0, addresses=[e.address for e, _ in expected]))
    previous = previous or {}
    return {e.address: _classify(watch_rpc, e.address, rows.get(e.address, []), price, min_conf,
                                 previous.get(e.address))
            for e, price in expected}
