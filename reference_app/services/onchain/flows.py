"""The escrow's outcomes as spends: release, refund, ruling, timeout, and a fee bump.

Who pays the miner fee (``fee_from``): the party receiving the main payout. On a
release the seller (as with any payment, the payee's amount is net of the network fee;
the buyer paid exactly the price), on a refund the buyer, on a ruling the party awarded
the larger share (the seller on a tie). The marketplace's commission and the buyer's
overpayment are never charged: the fee comes from the payout, not from money that was
never the payee's. An output too small to exist (under the dust limit) is not created;
its amount goes to the fee payer, which is the only output allowed to vary.

Fee bump: CPFP, by the payee, from its own output. A signed escrow spend cannot be
replaced by either party alone, and re-signing a higher-fee copy needs two signers again
and leaves two valid spends of one escrow in flight (I3 would have to track both). The
payee wants the money, holds its output alone, and its wallet pays for the parent's fee
deficit when it spends an unconfirmed output (ancestor-aware funding, Core 26+).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from regtest_cluster.nodes.bitcoind import BitcoinRpc, btc

from .errors import InvalidSpend, NotFunded
from .script import EscrowScript
from .spend import (DUST_SATS, Output, Signer, Spend, WalletSigner, broadcast, create_spend,
                    finalize)
from .watch import Funding

DEFAULT_FEE_RATE_SAT_VB = Decimal(2)


@dataclass(frozen=True)
class Terms:
    """What one order's spends pay, and to whom."""

    price_sats: int
    commission_sats: int
    buyer_address: str
    seller_address: str
    marketplace_address: str


@dataclass(frozen=True)
class Settlement:
    """A broadcast escrow spend."""

    txid: str
    tx_hex: str
    spend: Spend


def _fold_dust(outputs: list[Output], fee_from: str) -> list[Output]:
    kept = [o for o in outputs if o.role == fee_from or o.amount_sats >= DUST_SATS]
    folded = sum(o.amount_sats for o in outputs) - sum(o.amount_sats for o in kept)
    return [Output(o.role, o.address, o.amount_sats + folded) if o.role == fee_from else o for o in kept]


def _require_price(funding: Funding, action: str) -> None:
    if funding.confirmed_sats < funding.expected_sats:
        raise NotFunded(f"cannot {action}: {funding.confirmed_sats} sats confirmed of the "
                        f"{funding.expected_sats} owed ({funding.status})")


def release_outputs(terms: Terms, funding: Funding) -> tuple[list[Output], str]:
    _require_price(funding, "release")
    outputs = [Output("seller", terms.seller_address, terms.price_sats - terms.commission_sats),
               Output("marketplace", terms.marketplace_address, terms.commission_sats),
               Output("buyer", terms.buyer_address, funding.confirmed_sats - terms.price_sats)]
    return _fold_dust(outputs, "seller"), "seller"


def refund_outputs(terms: Terms, funding: Funding) -> tuple[list[Output], str]:
    return [Output("buyer", terms.buyer_address, funding.confirmed_sats)], "buyer"


def ruling_outputs(terms: Terms, funding: Funding, seller_sats: int) -> tuple[list[Output], str]:
    """The arbiter awards ``seller_sats`` of the price to the seller, the rest (and any
    overpayment) to the buyer; the commission shrinks in proportion to the seller's share."""
    if not 0 <= seller_sats <= terms.price_sats:
        raise InvalidSpend(f"a ruling gives the seller 0..{terms.price_sats} sats, got {seller_sats}")
    _require_price(funding, "rule")
    commission = terms.commission_sats * seller_sats // terms.price_sats
    buyer_sats = funding.confirmed_sats - seller_sats
    fee_from = "seller" if seller_sats >= buyer_sats else "buyer"
    outputs = [Output("seller", terms.seller_address, seller_sats - commission),
               Output("marketplace", terms.marketplace_address, commission),
               Output("buyer", terms.buyer_address, buyer_sats)]
    return _fold_dust(outputs, fee_from), fee_from


def settle(rpc: BitcoinRpc, watch_rpc: BitcoinRpc, escrow: EscrowScript, funding: Funding,
           outputs: Sequence[Output], fee_from: str, signers: Sequence[Signer], *,
           fee_rate_sat_vb: Decimal | float = DEFAULT_FEE_RATE_SAT_VB, sequence: int | None = None) -> Settlement:
    """Create the spend of every confirmed escrow UTXO, have each signer sign it, combine,
    finalize and broadcast. Two signers for the 2-of-3 branch; the seller alone (with
    ``sequence`` = N) for the timeout branch."""
    spend = create_spend(watch_rpc, escrow, funding.spendable, outputs, fee_rate_sat_vb=fee_rate_sat_vb,
                         fee_from=fee_from, sequence=sequence)
    tx_hex = finalize(rpc, escrow, [signer.sign(spend.psbt, escrow) for signer in signers])
    return Settlement(txid=broadcast(rpc, tx_hex), tx_hex=tx_hex, spend=spend)


def release(rpc: BitcoinRpc, watch_rpc: BitcoinRpc, escrow: EscrowScript, funding: Funding, terms: Terms,
            signers: Sequence[Signer], *, fee_rate_sat_vb: Decimal | float = DEFAULT_FEE_RATE_SAT_VB) -> Settlement:
    """Pay the seller (price minus commission minus fee), the marketplace its commission and
    the buyer any overpayment. Signers: the arbiter and the seller, or buyer and seller."""
    outputs, fee_from = release_outputs(terms, funding)
    return settle(rpc, watch_rpc, escrow, funding, outputs, fee_from, signers, fee_rate_sat_vb=fee_rate_sat_vb)


def refund(rpc: BitcoinRpc, watch_rpc: BitcoinRpc, escrow: EscrowScript, funding: Funding, terms: Terms,
           signers: Sequence[Signer], *, fee_rate_sat_vb: Decimal | float = DEFAULT_FEE_RATE_SAT_VB) -> Settlement:
    """Return everything confirmed to the buyer, minus the fee (also an underpayment at the
    deadline). Signers: the arbiter and the buyer."""
    outputs, fee_from = refund_outputs(terms, funding)
    return settle(rpc, watch_rpc, escrow, funding, outputs, fee_from, signers, fee_rate_sat_vb=fee_rate_sat_vb)


def ruling(rpc: BitcoinRpc, watch_rpc: BitcoinRpc, escrow: EscrowScript, funding: Funding, terms: Terms,
           seller_sats: int, signers: Sequence[Signer], *,
           fee_rate_sat_vb: Decimal | float = DEFAULT_FEE_RATE_SAT_VB) -> Settlement:
    """Carry out a dispute ruling; a split pays both. Signers: the arbiter and the winner."""
    outputs, fee_from = ruling_outputs(terms, funding, seller_sats)
    return settle(rpc, watch_rpc, escrow, funding, outputs, fee_from, signers, fee_rate_sat_vb=fee_rate_sat_vb)


def timeout_spend(rpc: BitcoinRpc, watch_rpc: BitcoinRpc, escrow: EscrowScript, funding: Funding,
                  seller_wallet: BitcoinRpc, to_address: str, *,
                  fee_rate_sat_vb: Decimal | float = DEFAULT_FEE_RATE_SAT_VB) -> Settlement:
    """The seller's exit when nobody ruled: everything to ``to_address``, signed by the
    seller's timeout key alone, nSequence = N. Raises TimelockNotReached before N blocks."""
    outputs = [Output("seller", to_address, funding.confirmed_sats)]
    return settle(rpc, watch_rpc, escrow, funding, outputs, "seller", [WalletSigner(seller_wallet)],
                  fee_rate_sat_vb=fee_rate_sat_vb, sequence=escrow.timeout_blocks)


def bump_fee(payee_wallet: BitcoinRpc, settlement: Settlement, role: str, fee_rate_sat_vb: Decimal | float,
             to_address: str | None = None) -> str:
    """CPFP a stuck escrow spend: the payee ``role`` spends its output back to itself at a
    fee rate that lifts parent and child together to ``fee_rate_sat_vb``. The child's txid."""
    outpoint = {"txid": settlement.txid, "vout": settlement.spend.vout(role)}
    address = to_address or payee_wallet.getnewaddress()
    made = payee_wallet.walletcreatefundedpsbt(
        [outpoint], [{address: btc(settlement.spend.paid_sats(role))}],
        {"add_inputs": False, "subtractFeeFromOutputs": [0], "fee_rate": Decimal(str(fee_rate_sat_vb))})
    signed = payee_wallet.walletprocesspsbt(made["psbt"], sign=True, finalize=True)
    if not signed["complete"]:
        raise InvalidSpend(f"wallet {payee_wallet.wallet!r} cannot sign for the {role}'s output of {settlement.txid}")
    return broadcast(payee_wallet, signed["hex"])
