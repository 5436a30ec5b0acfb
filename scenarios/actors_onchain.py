"""On-chain helpers for actors: each party's own bitcoind descriptor wallet, its keys
bound to the marketplace, payments to the escrow address, and the PSBT round trip.

The marketplace never holds a party's keys: a party signs in its own wallet
(``walletprocesspsbt``), recognising its key by the origin it bound.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from reference_app.services import onchain
from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError
from regtest_cluster.waiting import wait_for
from scenarios.actors import Party, Seller

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

    def key(self) -> str:
        return onchain.party_key(self.rpc)

    def pay(self, address: str, amount_sats: int) -> str:
        return self.rpc.sendtoaddress(address, amount_sats)

    def sign(self, psbt: str) -> str:
        return onchain.WalletSigner(self.rpc).sign(psbt, None)  # type: ignore[arg-type]

    def unload(self) -> None:
        try:
            self.cluster.bitcoind.rpc.unloadwallet(self.name)
        except RpcError:
            pass  # never loaded, or gone already


def bind_keys(party: Party, wallet: ChainWallet, seller: bool = False) -> dict:
    """Hand the marketplace this party's key (and a seller's timeout key)."""
    body = {"key": wallet.key(), **({"timeout_key": wallet.key()} if seller else {})}
    return party.call("PUT", "/me/onchain-keys", json=body)


def list_item(seller: Seller, title: str, price_sats: int, stock: int = 10) -> dict:
    return seller.call("POST", "/listings", json={"title": title, "description": f"{title}, as new",
                                                  "category": "electronics", "price_sats": price_sats,
                                                  "stock": stock, "escrow_mode": MODE}, expect=201)


def escrow(party: Party, order_id: int) -> dict:
    return party.call("GET", f"/orders/{order_id}/escrow")


def pay_escrow(party: Party, wallet: ChainWallet, order_id: int, *amounts_sats: int) -> list[str]:
    """Pay the escrow address once per amount (separate transactions): exact, over, under, twice."""
    address = escrow(party, order_id)["address"]
    return [wallet.pay(address, amount) for amount in amounts_sats]


def sign_pending(party: Party, wallet: ChainWallet, order_id: int, timeout: float = 30) -> dict:
    """Wait for the spend awaiting this party's signature, sign it in the party's wallet, hand it back."""
    def asked():
        response = party.attempt("GET", f"/orders/{order_id}/psbt")
        return response.json() if response.status_code == 200 else None

    pending = wait_for(asked, timeout=timeout, what=f"a PSBT for order {order_id} to sign")
    party.call("POST", f"/orders/{order_id}/psbt", json={"psbt": wallet.sign(pending["psbt"])})
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


def script_of(view: dict) -> onchain.EscrowScript:
    """The escrow script from what the marketplace showed: all a party needs without it."""
    return onchain.EscrowScript(descriptor=view["descriptor"], address=view["address"],
                                timeout_blocks=view["timeout_blocks"], buyer_key=view["buyer_key"],
                                seller_key=view["seller_key"], arbiter_key=view["arbiter_key"],
                                timeout_key=view["timeout_key"])


def timeout_spend(wallet: ChainWallet, view: dict) -> onchain.Settlement:
    """The seller alone, with the marketplace gone: watch the escrow in a wallet of its own
    and take everything through the timeout branch. Raises TimelockNotReached before N blocks."""
    rpc = wallet.cluster.bitcoind.rpc
    watch_rpc = onchain.open_watch_wallet(rpc, f"{wallet.name}-watch")
    script = script_of(view)
    onchain.watch(watch_rpc, script)
    funding = onchain.funding(watch_rpc, script, view["amount_sats"], 1)
    return onchain.timeout_spend(rpc, watch_rpc, script, funding, wallet.rpc, wallet.rpc.getnewaddress())


def bump_release(wallet: ChainWallet, view: dict, fee_rate_sat_vb: float) -> str:
    """CPFP a stuck release from the payee's own output (the core's bump_fee); the child's txid."""
    spend = view["spend"]
    outputs = tuple(onchain.Output(o["role"], o["address"],
                                   o["amount_sats"] + (spend["fee_sats"] if o["role"] == spend["fee_from"] else 0))
                    for o in spend["outputs"])
    plan = onchain.Spend(escrow=script_of(view), psbt="", inputs=(), outputs=outputs, fee_from=spend["fee_from"],
                         fee_sats=spend["fee_sats"])
    settlement = onchain.Settlement(txid=spend["txid"], tx_hex="", spend=plan)
    return onchain.bump_fee(wallet.rpc, settlement, spend["fee_from"], fee_rate_sat_vb)
