"""On-chain 2-of-3 escrows: full fund+release cycles a minute on one regtest bitcoind.

A cycle is the app's whole on-chain path for one order: fresh buyer, seller and arbiter
keys, the escrow descriptor and address, its import into the watch-only wallet, the
buyer's payment, k = 1 confirmation, the funding classified ``exact``, a release PSBT
signed by the seller's wallet and by the arbiter's derived key, finalized, broadcast and
confirmed. Escrows go in batches that share blocks (one ``sendmany`` funds a batch, one
block confirms it), with RPCs spread over a thread pool; the figure counts only cycles
whose release is in a block, over the time from the first key to the last block.
The node runs without fsync on wallet writes unless ``--wallet-fsync`` (see
``_BenchBitcoinD``); the JSON says which, and the load average it ran under.

    python -m bench.onchain --n 500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

from reference_app.services import onchain
from reference_app.services.onchain import ArbiterKey, EscrowScript, FundingStatus, WalletSigner
from regtest_cluster.env import ClusterEnv
from regtest_cluster.nodes.bitcoind import BitcoinD, BitcoinDPorts, BitcoinRpc
from regtest_cluster.ports import PortAllocator
from regtest_cluster.provision import resolve
from regtest_cluster.rundir import new_run_dir

PRICE_SATS = 100_000
COMMISSION_SATS = 1_000
TIMEOUT_BLOCKS = 1_008
MAX_BLOCK_WEIGHT = 4_000_000


class _BenchBitcoinD(BitcoinD):
    """The harness's bitcoind, optionally without fsync on wallet writes.

    Each new address and each imported descriptor is a wallet write; with fsync on this
    disk one costs 10-25 ms, and the parties' wallets (which in production run on the
    parties' own machines) would dominate the figure. Bitcoin Core's functional tests use
    the same switch. ``--wallet-fsync`` measures with durable writes."""

    def __init__(self, *args, wallet_fsync: bool, **kwargs) -> None:
        self.wallet_fsync = wallet_fsync
        super().__init__(*args, **kwargs)

    def argv(self) -> list[str]:
        return super().argv() + ([] if self.wallet_fsync else ["-unsafesqlitesync"])


class BenchFailed(RuntimeError):
    """A cycle did not end as it must (funding not exact, release not mined)."""


@dataclass
class Parties:
    node: BitcoinD
    watch: BitcoinRpc
    buyer: BitcoinRpc
    seller: BitcoinRpc
    keychain: onchain.ArbiterKeychain
    fee_address: str
    mine_to: str


@dataclass(frozen=True)
class Cycle:
    escrow: EscrowScript
    arbiter: ArbiterKey


def _start_node(env: ClusterEnv, wallet_fsync: bool) -> tuple[BitcoinD, Path]:
    run_dir = new_run_dir(env.runs_dir, "bench-onchain")
    take = PortAllocator().take
    node = _BenchBitcoinD(resolve(env).bitcoind, run_dir / "bitcoind",
                          BitcoinDPorts(rpc=take(), p2p=take(), zmq_block=take(), zmq_tx=take()),
                          wallet_fsync=wallet_fsync)
    try:
        node.start()
        node.ensure_miner_wallet()
    except BaseException:
        node.stop()
        raise
    return node, run_dir


def _setup(node: BitcoinD, n: int) -> Parties:
    rpc = node.rpc
    for name in ("buyer", "seller"):
        rpc.createwallet(name)
    node.mine(101)
    buyer = node.wallet("buyer")
    # Enough separate coins for every batch's sendmany, with room for fees.
    coins = max(4, n // 100)
    node.miner().sendmany({buyer.getnewaddress(): (PRICE_SATS * n) // coins + 10_000_000 for _ in range(coins)})
    mine_to = node.miner().getnewaddress()
    node.mine(1)
    # Mining needs an address, not a loaded wallet; unloaded, the miner's wallet no longer
    # inspects every escrow transaction.
    rpc.unloadwallet(node.MINER_WALLET)
    keychain = onchain.ArbiterKeychain(os.urandom(32))
    desc = rpc.getdescriptorinfo(f"wpkh({keychain.key(2**31 - 1).public})")["descriptor"]
    return Parties(node=node, watch=onchain.open_watch_wallet(rpc), buyer=buyer, seller=node.wallet("seller"),
                   keychain=keychain, fee_address=rpc.deriveaddresses(desc)[0], mine_to=mine_to)


def _new_escrow(p: Parties, index: int) -> Cycle:
    arbiter = p.keychain.key(index)
    escrow = onchain.build_escrow(p.node.rpc, onchain.party_key(p.buyer), onchain.party_key(p.seller),
                                  arbiter.public, onchain.party_key(p.seller), TIMEOUT_BLOCKS)
    return Cycle(escrow, arbiter)


def _release(p: Parties, cycle: Cycle, funding: onchain.Funding, buyer_refund: str, fee_rate: Decimal) -> str:
    terms = onchain.Terms(price_sats=PRICE_SATS, commission_sats=COMMISSION_SATS, buyer_address=buyer_refund,
                          seller_address=p.seller.getnewaddress(), marketplace_address=p.fee_address)
    # create_spend refuses a PSBT without witness_utxo, so every release here carries it.
    done = onchain.release(p.node.rpc, p.watch, cycle.escrow, funding, terms,
                           [onchain.ArbiterSigner(p.node.rpc, cycle.arbiter), WalletSigner(p.seller)],
                           fee_rate_sat_vb=fee_rate)
    return done.txid


def _mine_and_check(p: Parties, txids: list[str], what: str) -> dict:
    (block_hash,) = p.node.rpc.generatetoaddress(1, p.mine_to)
    block = p.node.rpc.getblock(block_hash, 1)
    missing = set(txids) - set(block["tx"])
    if missing:
        raise BenchFailed(f"{len(missing)} {what} transaction(s) not mined in {block_hash}, e.g. {min(missing)}")
    return block


class _Phases:
    """Wall time per phase, summed over batches (phases of neighbouring batches overlap)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()  # the builder thread times its phase too

    def timed(self, phase: str, fn: Callable):
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            with self._lock:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - t0


def _build(p: Parties, pool: ThreadPoolExecutor, first: int, size: int, phases: _Phases) -> list[Cycle]:
    return phases.timed("build_escrows",
                        lambda: list(pool.map(lambda i: _new_escrow(p, i), range(first, first + size))))


def _fund_and_release(p: Parties, pool: ThreadPoolExecutor, cycles: list[Cycle], fee_rate: Decimal,
                      phases: _Phases, weights: dict[str, list]) -> int:
    phases.timed("watch", lambda: onchain.watch(p.watch, *(c.escrow for c in cycles)))
    fund_txid = phases.timed("fund", lambda: p.buyer.sendmany({c.escrow.address: PRICE_SATS for c in cycles}))
    block = phases.timed("fund", lambda: _mine_and_check(p, [fund_txid], "funding"))
    weights["funding"].append(block["weight"])
    seen = phases.timed("check_funding",
                        lambda: onchain.fundings(p.watch, [(c.escrow, PRICE_SATS) for c in cycles], 1))
    wrong = [(a, f.status) for a, f in seen.items() if f.status != FundingStatus.EXACT or not f.funded]
    if wrong:
        raise BenchFailed(f"{len(wrong)} escrow(s) not funded exactly, e.g. {wrong[0]}")
    refund_to = p.buyer.getnewaddress()
    txids = phases.timed("release", lambda: list(pool.map(
        lambda c: _release(p, c, seen[c.escrow.address], refund_to, fee_rate), cycles)))
    block = phases.timed("confirm_release", lambda: _mine_and_check(p, txids, "release"))
    weights["release"].append(block["weight"])
    # Everything but the coinbase is a release: the weight one release takes in a block.
    coinbase = p.node.rpc.getrawtransaction(block["tx"][0], True)["weight"]
    weights["per_release"].append((block["weight"] - coinbase) / len(txids))
    return len(txids)


def run(n: int = 500, batch: int = 125, workers: int = 8, fee_rate_sat_vb: float = 2.0,
        wallet_fsync: bool = False, env: ClusterEnv | None = None,
        progress: Callable[[str], None] = lambda _m: None) -> dict:
    env = env or ClusterEnv.from_environ()
    t_start = time.monotonic()
    node, run_dir = _start_node(env, wallet_fsync)
    ok = False
    try:
        parties = _setup(node, n)
        setup_s = time.monotonic() - t_start
        phases, weights = _Phases(), {"funding": [], "release": [], "per_release": []}
        fee_rate = Decimal(str(fee_rate_sat_vb))
        starts = list(range(0, n, batch))
        done = 0
        t0 = time.monotonic()
        # The next batch's keys and scripts are made while this batch is funded and
        # released: they load the parties' wallets, the release loads the watch wallet.
        with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as builder:
            building = builder.submit(_build, parties, pool, 0, min(batch, n), phases)
            for first in starts:
                cycles = building.result()
                if first + batch < n:
                    building = builder.submit(_build, parties, pool, first + batch,
                                              min(batch, n - first - batch), phases)
                done += _fund_and_release(parties, pool, cycles, fee_rate, phases, weights)
                progress(f"{done}/{n} escrows funded and released ({time.monotonic() - t0:.1f} s)")
        cycles_s = time.monotonic() - t0
        ok = True
    finally:
        node.stop()
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"run folder kept: {run_dir}", file=sys.stderr)
    per_release = sum(weights["per_release"]) / len(weights["per_release"])
    blocks = weights["funding"] + weights["release"]
    return {
        "escrows": done,
        "fund_release_per_min": round(done / cycles_s * 60, 1),
        "fund_release_per_min_incl_setup": round(done / (time.monotonic() - t_start) * 60, 1),
        "cycles_s": round(cycles_s, 2),
        "setup_s": round(setup_s, 2),
        "phases_s": {k: round(v, 2) for k, v in phases.seconds.items()},
        "block_weight_used": {"blocks": len(blocks), "max": max(blocks),
                              "max_fraction": round(max(blocks) / MAX_BLOCK_WEIGHT, 4),
                              "funding": weights["funding"], "release": weights["release"]},
        "release_weight": round(per_release, 1),
        "releases_per_full_block": int(MAX_BLOCK_WEIGHT // per_release),
        "batch": batch, "workers": workers, "fee_rate_sat_vb": fee_rate_sat_vb,
        "confirmations": 1, "timeout_blocks": TIMEOUT_BLOCKS, "wallet_fsync": wallet_fsync,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.onchain", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="escrows to fund and release")
    parser.add_argument("--batch", type=int, default=125, help="escrows funded in one block")
    parser.add_argument("--workers", type=int, default=8, help="threads issuing RPCs")
    parser.add_argument("--fee-rate", type=float, default=2.0, help="release fee rate, sat/vB")
    parser.add_argument("--wallet-fsync", action="store_true", help="durable wallet writes (slower)")
    args = parser.parse_args(argv)
    result = run(args.n, args.batch, args.workers, args.fee_rate, args.wallet_fsync,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
