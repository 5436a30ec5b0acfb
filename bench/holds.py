"""Thousands of escrows held at once: what holding them costs the app, and what releasing costs.

A marketplace with multi-day shipping holds every paid, undelivered order's HTLC on its hub
at the same time. This benchmark opens N escrows through the app (each buyer pays its hold
invoice from its own node), waits until all N are FUNDED, and then, while they are only
held, samples the app process: its resident memory, its thread count and its CPU. Then it
ships and confirms every order and times how long until all N are RELEASED. The oracle
judges every order afterwards, on node truth.

N defaults to what the topology's HTLC slots allow: 483 per buyer channel at the hub, less a
margin of 33 for payouts and other traffic (900 on the hub topology).

``--payout-holds M`` measures payouts that sellers hold: the release latency (p50) of a
batch of ordinary escrows is measured, then M escrows are released to sellers who handed in
a hold invoice as their payout destination and never settle it, then the same batch is
measured again beside those M stuck payouts. At the end the sellers settle, so every order
ends RELEASED and is judged. By default the holding sellers live on the seller nodes, so
their held HTLCs load the same hub channels every other payout goes down (LND then spends
more on each of those payments: the figure is the app's and the channels' together);
``--holders NODE`` puts them on a node of their own, as a seller who holds its payouts would
be (the ``hub-holds`` topology has one, ``holder``).

    python -m bench.holds --n 900
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import psutil

from harness import evidence
from harness.actors import Party, Seller
from harness.presets import BENCH_SETTINGS
from harness.world import World
from regtest_cluster import launcher
from regtest_cluster.env import ClusterEnv
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import Topology, load as load_topology
from regtest_cluster.waiting import wait_for

from .escrow import PAGE, PRICE_SATS, Market, judge

MAX_HTLCS = 483     # lnd's default max_accepted_htlcs per channel
SLOT_MARGIN = 33    # left free on each buyer channel
# Held for minutes, not blocks: the worker ticks as a deployed app would, woken by events.
HOLD_SETTINGS = {**BENCH_SETTINGS, "worker_interval_s": 1.0}


def default_n(world: World) -> int:
    return (MAX_HTLCS - SLOT_MARGIN) * sum(1 for n in world.cluster.nodes.values() if n.role == "buyer")


def _states(world: World) -> dict[str, int]:
    counts: dict[str, int] = {}
    offset = 0
    while True:
        page = world.market.orders(world.admin, offset, PAGE)
        for o in page["items"]:
            counts[o["state"]] = counts.get(o["state"], 0) + 1
        offset += PAGE
        if offset >= page["total"]:
            return counts


def _wait_all(world: World, state: str, n: int, timeout: float, progress: Callable[[str], None]) -> None:
    def reached() -> bool:
        counts = _states(world)
        progress(f"{counts.get(state, 0)}/{n} {state}")
        return counts.get(state, 0) >= n
    wait_for(reached, timeout=timeout, what=f"{n} orders {state}", interval=2.0, max_interval=2.0)


def _pending_htlcs(world: World) -> int:
    return sum(len(c.get("pending_htlcs", [])) for c in world.cluster.node("hub").grpc.listchannels())


def _sample(pid: int, seconds: float) -> dict:
    proc = psutil.Process(pid)
    cpu0, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    cpu1, wall = proc.cpu_times(), time.monotonic() - t0
    busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"rss_mib": round(proc.memory_info().rss / 2**20, 1), "threads": proc.num_threads(),
            "cpu_percent": round(100 * busy / wall, 2), "window_s": round(wall, 1)}


class Holds:
    def __init__(self, world: World, market: Market, concurrency: int) -> None:
        self.world, self.market, self.concurrency = world, market, concurrency
        self.payments: list = []  # the buyers' payment futures (held until settled)

    def open(self, n: int) -> list[tuple[Party, Party, int]]:
        """N orders, each paid from its buyer's node; returns (buyer, seller, order id)."""
        def one(i: int) -> tuple[Party, Party, int]:
            buyer = self.market.buyers[i % len(self.market.buyers)]
            k = i % len(self.market.listings)
            order = buyer.buy(self.market.listings[k])
            self.payments.append(buyer.node.grpc.pay(order["hold"]["payment_request"], timeout_s=60,
                                                     fee_limit_sats=100))
            return buyer, self.market.sellers[k], order["id"]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, range(n)))

    def release(self, orders: list[tuple[Party, Party, int]]) -> None:
        def one(o: tuple[Party, Party, int]) -> None:
            buyer, seller, order_id = o
            seller.ship(order_id, "fastship", f"H{order_id:013d}")
            buyer.confirm(order_id)
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(one, orders))

    def release_latencies(self, count: int) -> list[float]:
        """Open, fund and release ``count`` ordinary escrows; seconds from confirm to RELEASED."""
        out = []
        for buyer, seller, order_id in self.open(count):
            wait_for(lambda: buyer.order(order_id)["state"] == "FUNDED", timeout=120, what="funded",
                     interval=0.05, max_interval=0.05)
            seller.ship(order_id, "fastship", f"L{order_id:013d}")
            t0 = time.monotonic()
            buyer.confirm(order_id)
            wait_for(lambda: buyer.order(order_id)["state"] == "RELEASED", timeout=300, what="released",
                     interval=0.02, max_interval=0.02)
            out.append(time.monotonic() - t0)
        return out


def holder_nodes(spec: Topology, holders: list[str] | None) -> list[str]:
    """The nodes the holding sellers live on: those named, or else the seller nodes. Checked
    before any node starts: a name the topology lacks is one error that lists its nodes."""
    names = [node.name for node in spec.nodes]
    if not holders:
        return [node.name for node in spec.nodes if node.role == "seller"]
    unknown = [name for name in holders if name not in names]
    if unknown:
        raise ValueError(f"--holders: no node {', '.join(unknown)} in topology {spec.name} (nodes: {', '.join(names)})")
    return list(holders)


def _held_payouts(world: World, market: Market, m: int, progress,
                  holders: list[str]) -> tuple[list[Party], list[tuple[object, bytes]]]:
    """M escrows released to sellers, living on the ``holders`` nodes, whose payout destination
    is a hold invoice they never settle."""
    sellers = [Seller.register(world.market, f"{name}-holds", ["seller"], world.cluster.nodes[name])
               for name in holders]
    listings = [s.list_item(f"held-payout item {i}", PRICE_SATS, stock=1_000_000)["id"] for i, s in enumerate(sellers)]
    held: list[tuple[object, bytes]] = []
    fee = None
    for i in range(m):
        buyer, seller = market.buyers[i % len(market.buyers)], sellers[i % len(sellers)]
        order = buyer.buy(listings[i % len(listings)])
        buyer.node.grpc.pay(order["hold"]["payment_request"], timeout_s=60, fee_limit_sats=100)
        wait_for(lambda: buyer.order(order["id"])["state"] == "FUNDED", timeout=120, what="funded",
                 interval=0.05, max_interval=0.05)
        seller.ship(order["id"], "fastship", f"P{order['id']:013d}")
        buyer.confirm(order["id"])
        view = buyer.order(order["id"])
        fee = view.get("fee_sats", fee)
        preimage = os.urandom(32)
        invoice = seller.node.grpc.add_hold_invoice(hashlib.sha256(preimage).digest(), PRICE_SATS - fee, 40, 3600,
                                                    "held payout")
        seller.market.call(seller, "POST", f"/orders/{order['id']}/payout-invoice",
                           json={"payment_request": invoice["payment_request"]})
        held.append((seller.node, preimage))
        if (i + 1) % 20 == 0:
            progress(f"held payouts: {i + 1}/{m}")
    return sellers, held


def run(env: ClusterEnv, n: int | None = None, payout_holds: int = 0, latency_batch: int = 20,
        concurrency: int = 16, idle_s: float = 15.0, topology: str = "hub",
        progress: Callable[[str], None] = lambda _m: None, holders: list[str] | None = None) -> dict:
    spec = load_topology(topology)
    holders = holder_nodes(spec, holders)
    run_dir = new_run_dir(env.runs_dir, "bench-holds")
    cluster = launcher.launch(spec, env, progress)
    world = World(cluster, run_dir)
    started_at = time.time()
    result: dict = {"topology": cluster.topology.name, "run_dir": str(run_dir), "cpus": os.cpu_count()}
    try:
        balances_before = evidence.channel_balances(cluster)
        world.start_app(HOLD_SETTINGS)
        market = Market(world)
        holds = Holds(world, market, concurrency)
        pid = world.market.daemon.pid
        result["app_idle_before"] = _sample(pid, 3.0)
        if payout_holds:
            progress(f"release latency of {latency_batch} escrows, no payouts held")
            alone = holds.release_latencies(latency_batch)
            progress(f"{payout_holds} payouts held by their sellers")
            extra, stuck = _held_payouts(world, market, payout_holds, progress, holders)
            market.sellers += extra  # judged with the others (they take no new orders: listings are fixed)
            progress(f"release latency of {latency_batch} escrows beside {payout_holds} held payouts")
            beside = holds.release_latencies(latency_batch)
            p_alone, p_beside = statistics.median(alone), statistics.median(beside)
            result["payout_holds"] = {
                "held": payout_holds, "batch": latency_batch, "holder_nodes": holders,
                "release_p50_s_without": round(p_alone, 3), "release_p50_s_with": round(p_beside, 3),
                "ratio": round(p_beside / p_alone, 2), "app_while_held": _sample(pid, 3.0)}
            for node, preimage in stuck:  # the sellers settle at last: every payout ends, every order RELEASED
                node.grpc.settle_invoice(preimage)
        n = n if n is not None else default_n(world)
        total_before = sum(_states(world).values())
        progress(f"opening {n} escrows, {concurrency} at a time")
        t0 = time.monotonic()
        opened = holds.open(n)
        _wait_all(world, "FUNDED", n, timeout=600, progress=progress)
        result["open"] = {"n": n, "seconds": round(time.monotonic() - t0, 1)}
        result["held_htlcs_at_hub"] = _pending_htlcs(world)
        progress(f"holding {n}: sampling the app for {idle_s:.0f}s")
        result["app_while_holding"] = _sample(pid, idle_s)
        progress(f"releasing {n}")
        t0 = time.monotonic()
        holds.release(opened)
        _wait_all(world, "RELEASED", total_before + n, timeout=900, progress=progress)
        seconds = time.monotonic() - t0
        result["release"] = {"seconds": round(seconds, 1), "per_s": round(n / seconds, 2)}
        result["app_after"] = _sample(pid, 3.0)
        failed = [p for p in holds.payments if p.done() and p.result().get("status") != "SUCCEEDED"]
        result["buyer_payments_not_succeeded"] = len(failed)
        progress("oracle: judging every order on node truth")
        result["oracle"] = judge(world, market, balances_before, started_at)
    finally:
        world.stop_app()
        cluster.stop()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.holds", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--payout-holds", type=int, default=0)
    parser.add_argument("--topology", default="hub")
    parser.add_argument("--holders", default=None, help="comma-separated node names (default: the seller nodes)")
    args = parser.parse_args(argv)
    result = run(ClusterEnv.from_environ(), args.n, args.payout_holds, topology=args.topology,
                 progress=lambda m: print(m, file=sys.stderr, flush=True),
                 holders=args.holders.split(",") if args.holders else None)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
