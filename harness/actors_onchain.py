"""On-chain helpers for actors: each party's own bitcoind descriptor wallet, its keys
bound to the marketplace, payments to the escrow address, and the PSBT round trip.

The marketplace never holds a party's keys: a party signs in its own wallet
(``walletprocesspsbt``), recognising its key by the origin it bound.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError
from regtest_cluster.waiting import wait_for
from harness import chain_wallet
from harness.actors import Party, Seller
from harness.chain_wallet import Settlement, TimelockNotReached

__all__ = ["MODE", "ChainWallet", "EscrowScript", "Settlement", "TimelockNotReached", "bind_keys", "bump_release",
           "escrow", "list_item", "pay_escrow", "script_of", "sign_pending", "timeout_spend", "wait_broadcast",
           "wait_escrow", "wait_escrow_spend"]

MODE = "onchain_multisig"


@dataclass
class ChainWallet:
    """A party's own descriptor wallet on the cluster's bitcoind."""

    name: str
    rpc: BitcoinRpc
    cluster: Cluster

    @classmethod
    def create(cls, cluster: Cluster, role: str, fund_sats: int = 0) -> "ChainWallet":
        name = f"oc-{role}-{uuid.uuid4().hex[:8]}"
        cluster.bitcoind.rpc.createwallet(name)
        wallet = cls(name, cluster.bitcoind.wallet(name), cluster)
        if fund_sats:
            wallet.fund(fund_sats)
        return wallet

    def fund(self, amount_sats: int) -> str:
        """Coins from the miner, confirmed (mined in steps, so every LND keeps up)."""
        txid = self.cluster.bitcoind.miner().sendtoaddress(self.rpc.getnewaddress(), amount_sats)
        self.cluster.mine(1)
        return txid

    @property
    def watch_name(self) -> str:
        """The watch-only wallet this party keeps for escrows it may have to spend alone."""
        return f"{self.name}-watch"

    def key(self) -> str:
        return chain_wallet.party_key(self.rpc)

    def pay(self, address: str, amount_sats: int) -> str:
        return self.rpc.sendtoaddress(address, amount_sats)

    def sign(self, psbt: str) -> str:
        return chain_wallet.sign(self.rpc, psbt)

    def unload(self) -> None:
        for name in (self.name, self.watch_name):
            try:
                self.cluster.bitcoind.rpc.unloadwallet(name)
            except RpcError:
                pass  # never loaded, or gone already


def bind_keys(party: Party, wallet: ChainWallet, seller: bool = False) -> dict:
    """Hand the marketplace this party's key (and a seller's timeout key)."""
    return party.market.set_onchain_keys(party, wallet.key(), wallet.key() if seller else None)


def list_item(seller: Seller, title: str, price_sats: int, stock: int = 10) -> dict:
    return seller.list_item(title, price_sats, stock, mode=MODE)


def escrow(party: Party, order_id: int) -> dict:
    return party.market.escrow(party, order_id)


def pay_escrow(party: Party, wallet: ChainWallet, order_id: int, *amounts_sats: int) -> list[str]:
    """Pay the escrow address once per amount (separate transactions): exact, over, under, twice."""
    address = escrow(party, order_id)["address"]
    return [wallet.pay(address, amount) for amount in amounts_sats]


def sign_pending(party: Party, wallet: ChainWallet, order_id: int, timeout: float = 30) -> dict:
    """Wait for the spend awaiting this party's signature, sign it in the party's wallet, hand it back."""
    pending = wait_for(lambda: party.market.pending_psbt(party, order_id), timeout=timeout,
                       what=f"a PSBT for order {order_id} to sign")
    party.market.submit_psbt(party, order_id, wallet.sign(pending["psbt"]))
    return pending


def wait_escrow(party: Party, order_id: int, condition, what: str, timeout: float = 30) -> dict:
    """The escrow view once ``condition(view)`` holds."""
    def check():
        view = escrow(party, order_id)
        return view if condition(view) else None

    return wait_for(check, timeout=timeout, what=f"order {order_id}: {what}")


def wait_escrow_spend(party: Party, order_id: int, timeout: float = 30) -> dict:
    """The escrow once the worker has planned and arbiter-signed its spend."""
    return wait_escrow(party, order_id, lambda v: v["spend"] is not None, "the escrow spend to be planned", timeout)


def wait_broadcast(party: Party, order_id: int, timeout: float = 30) -> dict:
    """The escrow once its spend is broadcast (the worker combines and sends after signing)."""
    return wait_escrow(party, order_id, lambda v: bool(v["spend"] and v["spend"]["txid"]),
                       "the escrow spend to be broadcast", timeout)


@dataclass(frozen=True)
class EscrowScript:
    """The escrow script as the marketplace showed it (all public): what a party keeps to
    spend without the marketplace."""

    descriptor: str
    address: str
    timeout_blocks: int
    buyer_key: str
    seller_key: str
    arbiter_key: str
    timeout_key: str


def script_of(view: dict) -> EscrowScript:
    """The escrow script from what the marketplace showed: all a party needs without it."""
    return EscrowScript(descriptor=view["descriptor"], address=view["address"],
                        timeout_blocks=view["timeout_blocks"], buyer_key=view["buyer_key"],
                        seller_key=view["seller_key"], arbiter_key=view["arbiter_key"],
                        timeout_key=view["timeout_key"])


def timeout_spend(wallet: ChainWallet, view: dict,
                  fee_rate_sat_vb: float = chain_wallet.DEFAULT_FEE_RATE_SAT_VB) -> Settlement:
    """The seller alone, with the marketplace gone: watch the escrow in a wallet of its own
    and take everything through the timeout branch. Raises TimelockNotReached before N blocks."""
    return chain_wallet.timeout_spend(wallet.cluster.bitcoind.rpc, wallet.rpc, wallet.watch_name, view,
                                      wallet.rpc.getnewaddress(), fee_rate_sat_vb)


def bump_release(wallet: ChainWallet, view: dict, fee_rate_sat_vb: float) -> str:
    """CPFP a stuck escrow spend from the payee's own output (the payee is the spend's fee
    payer, who wants the money and holds that output alone); the child's txid."""
    spend = view["spend"]
    payee = spend["fee_from"]
    address = next((o["address"] for o in spend["outputs"] if o["role"] == payee), None) \
        or view[f"{payee}_address"]
    return chain_wallet.cpfp(wallet.cluster.bitcoind.rpc, wallet.rpc, spend["txid"], address, fee_rate_sat_vb)
