"""Spending an escrow as a PSBT: create, sign (party wallet / arbiter key), finalize, broadcast.

    walletcreatefundedpsbt (watch-only wallet, explicit inputs, add_inputs false)
      -> each signer signs the same unsigned PSBT -> combinepsbt -> finalizepsbt
      -> sendrawtransaction

Fee policy: a spend takes every confirmed escrow UTXO and has no change. The outputs are
planned to add up to the inputs exactly, and the miner fee (``fee_rate_sat_vb`` times the
estimated size) is subtracted from ONE named output, ``fee_from``; every other output is
paid exactly as planned. Which output pays is the caller's rule (``flows`` documents it).

Signing: a party signs in its own wallet (``walletprocesspsbt``), recognising its key by
the origin in ``bip32_derivs``. The marketplace signs with ``descriptorprocesspsbt`` and
the escrow descriptor carrying the arbiter's child WIF: the key is never imported into a
wallet (nothing to leak from a wallet file, nothing to clean up), bitcoind holds it only
for the call, and no new Python dependency is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, Sequence

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError, btc, sats

from .errors import (IncompleteSpend, InvalidSpend, MissingWitnessUtxo, NotASigner, NotFunded,
                     SpendRejected, TimelockNotReached)
from .keys import ArbiterKey
from .psbt import summarize
from .script import EscrowScript
from .watch import Utxo

# No output below this is standard for any address type we pay (P2PKH's limit, the highest).
DUST_SATS = 546


@dataclass(frozen=True)
class Output:
    role: str          # "seller", "buyer", "marketplace"
    address: str
    amount_sats: int   # as planned; the ``fee_from`` output is paid this minus the fee


@dataclass(frozen=True)
class Spend:
    """An unsigned escrow spend, checked against its plan."""

    escrow: EscrowScript
    psbt: str
    inputs: tuple[Utxo, ...]
    outputs: tuple[Output, ...]   # in transaction order: vout i is outputs[i]
    fee_from: str
    fee_sats: int

    def vout(self, role: str) -> int:
        for i, out in enumerate(self.outputs):
            if out.role == role:
                return i
        raise KeyError(f"this spend pays no {role!r}; it pays {', '.join(o.role for o in self.outputs)}")

    def paid_sats(self, role: str) -> int:
        out = self.outputs[self.vout(role)]
        return out.amount_sats - (self.fee_sats if role == self.fee_from else 0)


def _check_plan(inputs: Sequence[Utxo], outputs: Sequence[Output], fee_from: str) -> None:
    if not inputs:
        raise NotFunded("the escrow has no confirmed UTXO to spend")
    roles = [o.role for o in outputs]
    if len(set(roles)) != len(roles) or len({o.address for o in outputs}) != len(outputs):
        raise InvalidSpend(f"each role and address may be paid once; got {roles}")
    if fee_from not in roles:
        raise InvalidSpend(f"the fee payer {fee_from!r} has no output; outputs are {roles}")
    small = [o.role for o in outputs if o.amount_sats < DUST_SATS]
    if small:
        raise InvalidSpend(f"outputs under the {DUST_SATS}-sat dust limit: {', '.join(small)}")
    total_in, total_out = sum(u.amount_sats for u in inputs), sum(o.amount_sats for o in outputs)
    if total_in != total_out:
        raise InvalidSpend(f"outputs add up to {total_out} sats but the escrow UTXOs hold {total_in}")


def create_spend(watch_rpc: BitcoinRpc, escrow: EscrowScript, inputs: Sequence[Utxo],
                 outputs: Sequence[Output], *, fee_rate_sat_vb: Decimal | float, fee_from: str,
                 sequence: int | None = None) -> Spend:
    """Build the unsigned PSBT in the watch-only wallet (which supplies the witness script
    and witness_utxo). ``sequence`` sets every input's nSequence: the timeout branch needs
    N; the default (none) is the wallet's RBF-signalling sequence."""
    _check_plan(inputs, outputs, fee_from)
    tx_inputs = [{"txid": u.txid, "vout": u.vout} | ({"sequence": sequence} if sequence is not None else {})
                 for u in inputs]
    options = {"add_inputs": False, "subtractFeeFromOutputs": [[o.role for o in outputs].index(fee_from)],
               "fee_rate": Decimal(str(fee_rate_sat_vb)), "replaceable": True}
    try:
        made = watch_rpc.walletcreatefundedpsbt(tx_inputs, [{o.address: btc(o.amount_sats)} for o in outputs],
                                                options)
    except RpcError as exc:
        if exc.code in (-4, -6, -8):  # wallet error, insufficient funds, invalid parameter
            raise InvalidSpend(f"bitcoind cannot build the spend: {exc.message}") from exc
        raise
    summary, fee = summarize(made["psbt"]), sats(made["fee"])
    if made["changepos"] != -1:
        raise InvalidSpend("bitcoind added a change output to an escrow spend; the plan must use every sat")
    # Vout i must be outputs[i], and only the fee payer may be short, by the fee.
    planned = tuple(o.amount_sats - (fee if o.role == fee_from else 0) for o in outputs)
    if summary.output_sats != planned:
        raise InvalidSpend(f"bitcoind built outputs {summary.output_sats}, the plan is {planned}")
    missing = [str(n) for n, i in enumerate(summary.inputs) if not i.has_witness_utxo]
    if missing:
        raise MissingWitnessUtxo(f"PSBT input(s) {', '.join(missing)} of {escrow.address} lack witness_utxo")
    if sequence is not None and summary.version < 2:
        raise InvalidSpend(f"a relative timelock needs tx version 2, bitcoind built version {summary.version}")
    return Spend(escrow=escrow, psbt=made["psbt"], inputs=tuple(inputs), outputs=tuple(outputs),
                 fee_from=fee_from, fee_sats=fee)


class Signer(Protocol):
    """Something that adds its signature to an escrow PSBT, or raises NotASigner."""

    name: str

    def sign(self, psbt: str, escrow: EscrowScript) -> str: ...


def _require_new_signature(before: str, after: str, who: str) -> str:
    if summarize(after).signatures <= summarize(before).signatures:
        raise NotASigner(f"{who} holds none of this escrow's keys: it added no signature")
    return after


@dataclass(frozen=True)
class WalletSigner:
    """A party signing in its own descriptor wallet."""

    wallet: BitcoinRpc

    @property
    def name(self) -> str:
        return f"wallet {self.wallet.wallet!r}"

    def sign(self, psbt: str, escrow: EscrowScript) -> str:
        signed = self.wallet.walletprocesspsbt(psbt, sign=True, finalize=False)["psbt"]
        return _require_new_signature(psbt, signed, self.name)


@dataclass(frozen=True)
class ArbiterSigner:
    """The marketplace, signing with its derived key through ``descriptorprocesspsbt``."""

    rpc: BitcoinRpc
    key: ArbiterKey

    @property
    def name(self) -> str:
        return f"arbiter key {self.key.path}"

    def sign(self, psbt: str, escrow: EscrowScript) -> str:
        signed = self.rpc.descriptorprocesspsbt(psbt, [escrow.signing_descriptor(self.key)],
                                                finalize=False)["psbt"]
        return _require_new_signature(psbt, signed, self.name)


def finalize(rpc: BitcoinRpc, escrow: EscrowScript, signed: Sequence[str]) -> str:
    """Combine the signers' PSBTs and finalize; the network transaction's hex.
    Raises IncompleteSpend when the signatures satisfy no branch of the script."""
    if not signed:
        raise IncompleteSpend("no signed PSBT to finalize")
    combined = signed[0] if len(signed) == 1 else rpc.combinepsbt(list(signed))
    result = rpc.finalizepsbt(combined)
    if not result["complete"]:
        signers = sorted({escrow.role_of(k) for i in summarize(result["psbt"]).inputs for k in i.signed_by})
        raise IncompleteSpend(f"signatures of {', '.join(signers) or 'nobody'} satisfy no branch of the "
                              "escrow script (2 of buyer, seller, arbiter; or the timeout key after N blocks)")
    return result["hex"]


def broadcast(rpc: BitcoinRpc, tx_hex: str) -> str:
    """Send a finished spend; its txid. Raises TimelockNotReached for a timeout spend tried
    before N blocks, SpendRejected for any other refusal."""
    try:
        return rpc.sendrawtransaction(tx_hex)
    except RpcError as exc:
        if "non-BIP68-final" in exc.message:
            raise TimelockNotReached("the timeout branch is not open yet: fewer than N blocks since the "
                                     f"funding confirmed (bitcoind: {exc.message})") from exc
        if exc.code in (-25, -26, -27):  # missing inputs, rejected by policy/consensus, already mined
            raise SpendRejected(f"bitcoind refused the escrow spend: {exc.message}") from exc
        raise
