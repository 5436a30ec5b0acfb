"""What a party does on chain with its own bitcoind descriptor wallet, written for the
harness from bitcoind's RPC alone (it shares no code with any marketplace: if a
marketplace's on-chain library is wrong, the parties the harness plays must not make
the same mistake).

- ``party_key``: a fresh key of the party's wallet as ``[fingerprint/path]pubkey``, the
  form a marketplace puts in the escrow descriptor. The origin matters: it ends up in the
  PSBT's BIP32 derivations, which is how the wallet later recognises the key as its own.
- ``sign``: sign an escrow PSBT in the party's wallet (``walletprocesspsbt``), after
  checking every input carries ``witness_utxo`` (a segwit signature commits to the amount;
  without it the party could not see what it signs for), and only if a signature was
  actually added.
- ``timeout_spend``: the favoured party alone, with the marketplace gone, takes every
  confirmed coin of the escrow through the timelocked branch
  (``wsh(or_d(multi(2,B,S,A),and_v(v:pk(T),older(N))))``): nSequence N, signed by T only.
  bitcoind refuses it before N blocks as ``non-BIP68-final``: ``TimelockNotReached``.
- ``cpfp``: a payee lifts a stuck escrow spend by spending its own output of it.

Fees a party sets itself are measured, not estimated: the transaction is built and signed
once with no fee, its virtual size read back from bitcoind, and built again paying
``fee rate × vsize``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError, btc, sats

# What a party pays per vbyte when the fee is its own choice (the timeout spend).
DEFAULT_FEE_RATE_SAT_VB = 2
# A compressed public key with its BIP32 origin: [8 hex digits/step/step...]02|03 + 32 bytes.
ORIGIN_KEY = re.compile(r"\[[0-9a-f]{8}(?:/[0-9]+[h']?)+\](?:02|03)[0-9a-f]{64}")


class ChainWalletError(RuntimeError):
    """Something a party's wallet could not do; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TimelockNotReached(ChainWalletError):
    """The timeout branch was tried before N blocks passed since the funding confirmed:
    bitcoind refused the spend as ``non-BIP68-final``."""


class SpendRejected(ChainWalletError):
    """bitcoind refused a finished transaction for another reason."""


class NotASigner(ChainWalletError):
    """The wallet added no signature: it holds none of the keys the PSBT needs."""


class MissingWitnessUtxo(ChainWalletError):
    """A PSBT input lacks witness_utxo: the party will not sign an amount it cannot see."""


class IncompleteSpend(ChainWalletError):
    """The signatures gathered satisfy no branch of the escrow script."""


class NotFunded(ChainWalletError):
    """The escrow holds no confirmed coin to spend."""


class BadEscrow(ChainWalletError):
    """The escrow's descriptor does not give the address the marketplace showed."""


@dataclass(frozen=True)
class Output:
    role: str
    address: str
    amount_sats: int   # what the output pays


@dataclass(frozen=True)
class Spend:
    """A transaction a party made: what it spent, paid and left to the miners."""

    inputs: tuple[str, ...]        # outpoints, txid:vout
    outputs: tuple[Output, ...]    # in transaction order
    fee_from: str
    fee_sats: int

    def vout(self, role: str) -> int:
        for n, out in enumerate(self.outputs):
            if out.role == role:
                return n
        raise KeyError(f"this spend pays no {role!r}; it pays {', '.join(o.role for o in self.outputs)}")

    def paid_sats(self, role: str) -> int:
        return self.outputs[self.vout(role)].amount_sats


@dataclass(frozen=True)
class Settlement:
    """A broadcast spend."""

    txid: str
    tx_hex: str
    spend: Spend


@dataclass(frozen=True)
class Coin:
    txid: str
    vout: int
    amount_sats: int
    confirmations: int

    @property
    def outpoint(self) -> str:
        return f"{self.txid}:{self.vout}"


# --- keys

def party_key(wallet: BitcoinRpc) -> str:
    """A fresh key of ``wallet``, as ``[fingerprint/path]pubkey``, built from what
    ``getaddressinfo`` says of a new bech32 address and checked against its descriptor."""
    address = wallet.getnewaddress("", "bech32")
    info = wallet.getaddressinfo(address)
    fingerprint, path, pubkey = info.get("hdmasterfingerprint"), info.get("hdkeypath"), info.get("pubkey")
    if not (fingerprint and path and pubkey and path.startswith("m/")):
        raise ChainWalletError(f"wallet {wallet.wallet!r} gave no BIP32 origin for {address} "
                               f"(getaddressinfo: {info}); a descriptor wallet is needed")
    key = f"[{fingerprint}/{path[2:]}]{pubkey}"
    desc = info.get("desc", "").split("#", 1)[0]
    if not ORIGIN_KEY.fullmatch(key) or desc.replace("'", "h") != f"wpkh({key})".replace("'", "h"):
        raise ChainWalletError(f"wallet {wallet.wallet!r}: {address} is {desc!r}, not wpkh({key})")
    return key


# --- PSBTs

def _signature_count(rpc: BitcoinRpc, psbt: str) -> tuple[int, list[dict]]:
    inputs = rpc.decodepsbt(psbt)["inputs"]
    return sum(len(i.get("partial_signatures", {})) for i in inputs), inputs


def sign(wallet: BitcoinRpc, psbt: str) -> str:
    """The PSBT signed by ``wallet`` (not finalized: others may still sign)."""
    before, inputs = _signature_count(wallet, psbt)
    missing = [str(n) for n, i in enumerate(inputs) if "witness_utxo" not in i]
    if missing:
        raise MissingWitnessUtxo(f"PSBT input(s) {', '.join(missing)} lack witness_utxo; "
                                 f"wallet {wallet.wallet!r} will not sign them")
    signed = wallet.walletprocesspsbt(psbt, sign=True, finalize=False)["psbt"]
    if _signature_count(wallet, signed)[0] <= before:
        raise NotASigner(f"wallet {wallet.wallet!r} holds none of this PSBT's keys: it added no signature")
    return signed


def _finish(rpc: BitcoinRpc, psbt: str) -> str:
    done = rpc.finalizepsbt(psbt)
    if not done.get("complete"):
        raise IncompleteSpend("the signatures satisfy no branch of the script "
                              "(two of buyer, seller, arbiter; or the timeout key after N blocks)")
    return done["hex"]


def broadcast(rpc: BitcoinRpc, tx_hex: str) -> str:
    """Send a finished transaction; its txid."""
    try:
        return rpc.sendrawtransaction(tx_hex)
    except RpcError as exc:
        if "non-BIP68-final" in exc.message:
            raise TimelockNotReached("the timeout branch is not open yet: fewer than N blocks since the "
                                     f"funding confirmed (bitcoind: {exc.message})") from exc
        if exc.code in (-25, -26, -27):  # missing inputs, rejected, already in the chain
            raise SpendRejected(f"bitcoind refused the transaction: {exc.message}") from exc
        raise


def _vsize(rpc: BitcoinRpc, tx_hex: str) -> int:
    return int(rpc.call("decoderawtransaction", tx_hex)["vsize"])


def _fee(fee_rate_sat_vb: float | Decimal, vsize: int) -> int:
    return math.ceil(Decimal(str(fee_rate_sat_vb)) * vsize)


# --- watching an escrow

def open_watch_wallet(rpc: BitcoinRpc, name: str) -> BitcoinRpc:
    """A watch-only descriptor wallet (no private keys, blank), created or loaded."""
    if name not in rpc.listwallets():
        try:
            rpc.createwallet(name, disable_private_keys=True, blank=True)
        except RpcError as exc:
            if "already exists" in exc.message:
                try:
                    rpc.loadwallet(name)
                except RpcError as again:
                    if "already loaded" not in again.message:
                        raise
            elif "already loaded" not in exc.message:
                raise
    return rpc.for_wallet(name)


def watch(watch_rpc: BitcoinRpc, descriptors: list[str], since: int | str = 0) -> None:
    """Import descriptors the wallet does not watch yet; ``since`` is the rescan's start
    (a unix time: bitcoind rescans from two hours before it; 0 is the whole chain)."""
    if not descriptors:
        return
    results = watch_rpc.importdescriptors([{"desc": watch_rpc.getdescriptorinfo(d)["descriptor"],
                                            "timestamp": since} for d in descriptors])
    failed = [(d, r.get("error", {}).get("message", r)) for d, r in zip(descriptors, results) if not r.get("success")]
    if failed:
        raise ChainWalletError(f"wallet {watch_rpc.wallet!r} refused {len(failed)} descriptor(s); first: "
                               f"{failed[0][0]}: {failed[0][1]}")


def coins(watch_rpc: BitcoinRpc, address: str, min_conf: int = 1) -> list[Coin]:
    rows = watch_rpc.listunspent(min_conf, addresses=[address])
    return sorted((Coin(r["txid"], r["vout"], sats(r["amount"]), r["confirmations"]) for r in rows),
                  key=lambda c: (c.txid, c.vout))


def _since(rpc: BitcoinRpc, view: dict) -> int:
    """Where a rescan for this escrow may start: the earliest funding block the node
    knows among the coins the marketplace showed (0, the whole chain, if none)."""
    times = []
    for utxo in view.get("utxos") or []:
        try:
            tx = rpc.getrawtransaction(utxo["txid"], True)
        except RpcError:
            return 0
        if not tx.get("blocktime"):
            return 0
        times.append(int(tx["blocktime"]))
    return min(times) if times else 0


# --- the timeout branch

def _timeout_tx(rpc: BitcoinRpc, watch_rpc: BitcoinRpc, wallet: BitcoinRpc, funds: list[Coin], blocks: int,
                to_address: str, fee_sats: int) -> str:
    total = sum(c.amount_sats for c in funds)
    psbt = rpc.call_named("createpsbt", inputs=[{"txid": c.txid, "vout": c.vout, "sequence": blocks} for c in funds],
                          outputs=[{to_address: btc(total - fee_sats)}], locktime=0)
    decoded = rpc.decodepsbt(psbt)["tx"]
    if decoded["version"] < 2:
        raise ChainWalletError(f"a relative timelock needs transaction version 2, createpsbt made {decoded['version']}")
    # The watch-only wallet knows the coins and the script: it adds witness_utxo, the
    # witness script and each key's origin, which is how the party's wallet finds its key.
    filled = watch_rpc.walletprocesspsbt(psbt, sign=False, finalize=False)["psbt"]
    return _finish(rpc, sign(wallet, filled))


def timeout_spend(rpc: BitcoinRpc, wallet: BitcoinRpc, watch_name: str, view: dict, to_address: str,
                  fee_rate_sat_vb: float | Decimal = DEFAULT_FEE_RATE_SAT_VB) -> Settlement:
    """Every confirmed coin of the escrow in ``view`` to ``to_address``, signed by the
    party's timeout key alone with nSequence = N. Raises TimelockNotReached before N blocks."""
    descriptor, address, blocks = view["descriptor"], view["address"], int(view["timeout_blocks"])
    if rpc.deriveaddresses(descriptor) != [address]:
        raise BadEscrow(f"the escrow descriptor gives {rpc.deriveaddresses(descriptor)}, not {address}")
    watch_rpc = open_watch_wallet(rpc, watch_name)
    if not watch_rpc.getaddressinfo(address).get("ismine"):
        watch(watch_rpc, [descriptor], _since(rpc, view))
    funds = coins(watch_rpc, address, 1)
    if not funds:
        raise NotFunded(f"the escrow {address} holds no confirmed coin")
    total = sum(c.amount_sats for c in funds)
    fee = _fee(fee_rate_sat_vb, _vsize(rpc, _timeout_tx(rpc, watch_rpc, wallet, funds, blocks, to_address, 0)))
    if total - fee <= 0:
        raise NotFunded(f"the escrow's {total} sats do not cover a {fee}-sat fee")
    tx_hex = _timeout_tx(rpc, watch_rpc, wallet, funds, blocks, to_address, fee)
    spend = Spend(inputs=tuple(c.outpoint for c in funds), outputs=(Output("seller", to_address, total - fee),),
                  fee_from="seller", fee_sats=fee)
    return Settlement(txid=broadcast(rpc, tx_hex), tx_hex=tx_hex, spend=spend)


# --- child pays for parent

def cpfp(rpc: BitcoinRpc, wallet: BitcoinRpc, parent_txid: str, address: str, fee_rate_sat_vb: float | Decimal,
         to_address: str | None = None) -> str:
    """Spend the output of ``parent_txid`` paying ``address`` (the wallet's) back to the
    wallet, paying enough that parent and child together reach ``fee_rate_sat_vb``; the
    child's txid."""
    parent = rpc.getrawtransaction(parent_txid, True)
    vout = next((o for o in parent["vout"] if o["scriptPubKey"].get("address") == address), None)
    if vout is None:
        raise ChainWalletError(f"transaction {parent_txid} pays nothing to {address}")
    try:
        entry = rpc.getmempoolentry(parent_txid)
        parent_vsize, parent_fee = int(entry["vsize"]), sats(entry["fees"]["base"])
    except RpcError:
        parent_vsize, parent_fee = 0, 0  # confirmed already: the child pays for itself only
    amount, to_address = sats(vout["value"]), to_address or wallet.getnewaddress()

    def child(fee_sats: int) -> str:
        psbt = rpc.call_named("createpsbt", inputs=[{"txid": parent_txid, "vout": vout["n"]}],
                              outputs=[{to_address: btc(amount - fee_sats)}], locktime=0)
        return _finish(rpc, sign(wallet, wallet.walletprocesspsbt(psbt, sign=False, finalize=False)["psbt"]))

    child_vsize = _vsize(rpc, child(0))
    fee = max(_fee(fee_rate_sat_vb, child_vsize),
              _fee(fee_rate_sat_vb, parent_vsize + child_vsize) - parent_fee)
    if amount - fee <= 0:
        raise ChainWalletError(f"the {amount}-sat output cannot pay a {fee}-sat child fee")
    return broadcast(rpc, child(fee))
