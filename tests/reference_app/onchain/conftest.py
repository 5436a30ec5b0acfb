"""A real regtest chain for the on-chain escrow: buyer and seller descriptor wallets, the
marketplace's watch-only wallet and arbiter keychain. Nothing here stands in for bitcoind."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from reference_app.services import onchain
from reference_app.services.onchain import ArbiterKey, EscrowScript, Funding
from regtest_cluster.nodes.bitcoind import BitcoinD, BitcoinRpc, sats

SEED = bytes(range(32))
TIMEOUT_BLOCKS = 3  # small, so the timeout test mines little
K = 1               # confirmations that count as funded here


@dataclass
class Chain:
    node: BitcoinD
    watch: BitcoinRpc
    buyer: BitcoinRpc
    seller: BitcoinRpc
    keychain: onchain.ArbiterKeychain
    marketplace_address: str
    _index: itertools.count = field(default_factory=itertools.count)

    @property
    def rpc(self) -> BitcoinRpc:
        return self.node.rpc

    def escrow(self, timeout_blocks: int = TIMEOUT_BLOCKS) -> tuple[EscrowScript, ArbiterKey]:
        arbiter = self.keychain.key(next(self._index))
        escrow = onchain.build_escrow(self.rpc, onchain.party_key(self.buyer), onchain.party_key(self.seller),
                                      arbiter.public, onchain.party_key(self.seller), timeout_blocks)
        onchain.watch(self.watch, escrow)
        return escrow, arbiter

    def pay(self, escrow: EscrowScript, *amounts_sats: int) -> list[str]:
        """The buyer pays the escrow address, once per amount (separate transactions); returns
        once the watch-only wallet has seen them in the mempool."""
        txids = [self.buyer.sendtoaddress(escrow.address, a) for a in amounts_sats]
        self.rpc.syncwithvalidationinterfacequeue()
        return txids

    def mine(self, n: int = 1) -> list[str]:
        return self.node.mine(n)

    def funding(self, escrow: EscrowScript, price: int, previous: Funding | None = None) -> Funding:
        return onchain.funding(self.watch, escrow, price, K, previous)

    def terms(self, price: int, commission: int) -> onchain.Terms:
        return onchain.Terms(price_sats=price, commission_sats=commission,
                             buyer_address=self.buyer.getnewaddress(), seller_address=self.seller.getnewaddress(),
                             marketplace_address=self.marketplace_address)

    def arbiter(self, key: ArbiterKey) -> onchain.ArbiterSigner:
        return onchain.ArbiterSigner(self.rpc, key)

    def paid_to(self, txid: str) -> dict[str, int]:
        """Node truth: what a transaction pays, by address."""
        tx = self.rpc.getrawtransaction(txid, True)
        return {o["scriptPubKey"]["address"]: sats(o["value"]) for o in tx["vout"]}

    def confirmations(self, txid: str) -> int:
        return self.rpc.getrawtransaction(txid, True).get("confirmations", 0)

    def assert_witness_utxo(self, psbt: str) -> None:
        """Checked by bitcoind's own decoder, independently of our parser."""
        inputs = self.rpc.decodepsbt(psbt)["inputs"]
        assert inputs and all("witness_utxo" in i for i in inputs), inputs


def fee_address(rpc: BitcoinRpc, keychain: onchain.ArbiterKeychain) -> str:
    """The marketplace's commission address: a key of its own seed, no wallet needed."""
    desc = rpc.getdescriptorinfo(f"wpkh({keychain.key(2**31 - 1).public})")["descriptor"]
    return rpc.deriveaddresses(desc)[0]


@pytest.fixture
def chain(bitcoind: BitcoinD) -> Chain:
    # The miner's wallet doubles as the buyer's: it already holds mature coins, and each
    # wallet made here costs most of a second (its keypool) in every test.
    bitcoind.rpc.createwallet("seller")
    keychain = onchain.ArbiterKeychain(SEED)
    return Chain(node=bitcoind, watch=onchain.open_watch_wallet(bitcoind.rpc), buyer=bitcoind.miner(),
                 seller=bitcoind.wallet("seller"), keychain=keychain,
                 marketplace_address=fee_address(bitcoind.rpc, keychain))
