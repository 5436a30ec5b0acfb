"""Hold-invoice escrows settled per second, end to end through the app, beside raw LND.

One escrow is the app's whole ln_hold path: the buyer orders (the hub issues a
hold invoice), pays it from its own LND, the order is FUNDED on the hub's
ACCEPTED, the seller ships, the buyer confirms, and the worker settles the
hold and pays the seller's invoice (fetched from the seller's bound node). An
escrow counts once the buyer's payment has SUCCEEDED (the hold is settled)
and the order is RELEASED (the payout succeeded). Latency runs from the order
request to RELEASED. The buyer learns of FUNDED and RELEASED as a client app
would: woken by the app's notification stream (``--waits push``), or asking for
the order every 0.2 s (``--waits poll``).

The baseline, on the same cluster in the same run, is raw LND: the seller's
node adds an invoice and the buyer's node pays it through the hub, with the
same concurrency, half of the payments before the escrows and half after them
(each half is reported too). A raw payment crosses buyer -> hub -> seller; an escrow
updates the same two channels (the hold, its settle, then the payout), adding
one invoice and a later settle, so its ceiling is near the raw rate. CPU is
measured in both phases, for every process (the app, each LND, bitcoind), so
the CPU an escrow costs can be set beside the CPU a raw payment costs; the app's
own database queries and hub calls per escrow come from its /health counters.

A second baseline, the floor, is an escrow with no app: the benchmark itself makes
the node calls the app makes for one (the hub adds a hold invoice and follows it,
the buyer pays it, the hub settles it once ACCEPTED, asks the seller's node for an
invoice, decodes it and pays it), on the same clients. Its rate beside the raw rate
is the most any hold-invoice app could reach on these nodes and this machine; the
app's rate beside the floor's is what the app itself costs. ``--floor-hold-s S``
holds each floor escrow S seconds before the settle, as a ship and a confirm would:
the nodes' cost at an app's pace, since each HTLC held longer costs them more.

    python -m bench.escrow --escrows 200 --concurrency 16
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from bench import threads
from regtest_cluster import launcher
from regtest_cluster.daemon import cpu_seconds
from regtest_cluster.env import ClusterEnv
from regtest_cluster.nodes.wallet import wallet
from regtest_cluster.postgres import app_database
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import load as load_topology
from regtest_cluster.waiting import wait_for
from harness import evidence, oracle
from harness.actors import Buyer
from harness.driver import counts_between, read_work_counters
from harness.http import ReferenceMarketplace
from harness.presets import BENCH_SETTINGS
from harness.world import World
from reports import bench as report

PRICE_SATS = 1_000
PAGE = 100  # orders a page, when the oracle lists them
POLL_S = 0.2  # --waits poll: the client asks for the order this often
WAITS = ("push", "poll")
# Where an escrow's latency goes: order request (hold invoice issued), buyer pays until the app
# says FUNDED, ship + confirm, then settle + payout until RELEASED.
PHASES = ("order", "fund", "ship_confirm", "settle_payout")
APP_SETTINGS = BENCH_SETTINGS
FLOOR_CLTV = 144  # the floor's hold invoices' final CLTV (any valid value costs the nodes the same)
FLOOR_PAYOUT_SATS = PRICE_SATS - 10  # the floor pays the seller less a fee, as the app does


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50_s": None, "p99_s": None}
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_s": round(statistics.median(ordered), 3), "p99_s": round(p99, 3)}


def _timed_pool(n: int, concurrency: int, one: Callable[[int], None],
                progress: Callable[[str], None], label: str) -> dict:
    """Run ``one(i)`` for i < n on ``concurrency`` threads; rate and latency of the successes."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def timed(i: int) -> None:
        t0 = time.monotonic()
        try:
            one(i)
        except Exception as exc:  # a failed escrow is a figure, not a crash
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        with lock:
            latencies.append(time.monotonic() - t0)
            if len(latencies) % max(1, n // 10) == 0:
                progress(f"{label}: {len(latencies)}/{n}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=label) as pool:
        list(pool.map(timed, range(n)))
    return _figures(latencies, len(errors), errors, time.monotonic() - t0)


def _joined(*runs: dict) -> dict:
    """Runs of one kind of work as one: their successes over their summed time, their latencies
    pooled."""
    return _figures([t for run in runs for t in run["latencies"]], sum(run["failed"] for run in runs),
                    [e for run in runs for e in run["errors"]], sum(run["wall"] for run in runs))


def _figures(latencies: list[float], failed: int, errors: list[str], wall: float) -> dict:
    return {"done": len(latencies), "failed": failed, "wall_s": round(wall, 2),
            "per_s": round(len(latencies) / wall, 2) if wall else 0.0, **percentiles(latencies),
            "errors": errors[:5], "latencies": latencies, "wall": wall}


def _wait_state(party, order_id: int, state: str, waits: str, timeout: float = 120) -> None:
    """Wait as a client app would until the order is in ``state``: woken by the notification the
    marketplace pushes (``push``), or asking for the order every POLL_S (``poll``)."""
    if waits == "push":
        party.market.wait_order(party, order_id, (state,), timeout=timeout, view=False)
        return
    wait_for(lambda: party.order(order_id)["state"] == state, timeout=timeout, what=f"order {order_id} {state}",
             interval=POLL_S, max_interval=POLL_S)


class Market:
    """The parties of the benchmark: one buyer account per buyer node, one seller per seller node."""

    def __init__(self, world: World, waits: str = "push") -> None:
        cluster = world.cluster
        self.world = world
        self.waits = waits
        self.buyers = [Buyer.register(world.market, name, ["buyer"], node, f"{name} Bench Street")
                       for name, node in cluster.nodes.items() if node.role == "buyer"]
        self.sellers = [world.seller(name) for name, node in cluster.nodes.items() if node.role == "seller"]
        self.listings = [s.list_item(f"bench item {i}", PRICE_SATS, stock=1_000_000)["id"]
                         for i, s in enumerate(self.sellers)]
        hubs = [node for node in cluster.nodes.values() if node.role == "hub"]
        self.hub = hubs[0].grpc if hubs else None  # the floor's hub client (gRPC, as the app's)
        self.phases: dict[str, list[float]] = {p: [] for p in PHASES}
        self._lock = threading.Lock()

    def escrow(self, i: int) -> None:
        buyer, k = self.buyers[i % len(self.buyers)], i % len(self.sellers)
        seller, listing = self.sellers[k], self.listings[k]
        marks = [time.monotonic()]
        order = buyer.buy(listing)
        marks.append(time.monotonic())
        payment = buyer.pay(order)
        _wait_state(buyer, order["id"], "FUNDED", self.waits)
        marks.append(time.monotonic())
        seller.ship(order["id"], "fastship", f"B{uuid.uuid4().hex[:14]}")
        buyer.confirm(order["id"])
        marks.append(time.monotonic())
        payment.join(180)
        if payment.outcome.get("status") != "SUCCEEDED":
            raise RuntimeError(f"order {order['id']}: buyer's payment {payment.outcome}")
        _wait_state(buyer, order["id"], "RELEASED", self.waits)
        marks.append(time.monotonic())
        with self._lock:
            for phase, (a, b) in zip(PHASES, zip(marks, marks[1:])):
                self.phases[phase].append(b - a)

    def raw_payment(self, i: int) -> None:
        buyer, seller = self.buyers[i % len(self.buyers)], self.sellers[i % len(self.sellers)]
        invoice = seller.node.rest.addinvoice(PRICE_SATS, "bench raw", 3600)
        result = buyer.node.rest.send_payment(invoice["payment_request"], timeout_s=120, fee_limit_sats=100)
        if result.get("status") != "SUCCEEDED":
            raise RuntimeError(f"raw payment {result.get('status')}: {result.get('failure_reason')}")


    def floor_escrow(self, i: int, hold_s: float = 0.0) -> None:
        """One escrow's node calls with no app, on the app's clients: the hub over gRPC (a hold
        invoice, its subscription, the settle, the decode and the payout), the seller's node for
        the payout invoice as the app asks a bound node, the buyer paying as in an escrow. The hold
        is settled ``hold_s`` after it was ACCEPTED."""
        buyer, seller = self.buyers[i % len(self.buyers)], self.sellers[i % len(self.sellers)]
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        hold = self.hub.add_hold_invoice(payment_hash, PRICE_SATS, FLOOR_CLTV, 3600, f"bench floor {i}")
        accepted = threading.Event()

        def update(invoice: dict) -> bool:
            if invoice.get("state") == "ACCEPTED":
                accepted.set()
                return True
            return False

        watch = self.hub.watch_invoice(payment_hash, update, states=("ACCEPTED",), until=("SETTLED", "CANCELED"))
        payer = buyer.pay_request(hold["payment_request"], f"floor-pay-{i}")
        try:
            if not accepted.wait(120):
                raise RuntimeError(f"floor escrow {i}: the hold was not ACCEPTED within 120 s ({payer.outcome})")
        finally:
            watch.cancel()
        time.sleep(hold_s)
        self.hub.settle_invoice(preimage)
        request = wallet(seller.node).invoice(FLOOR_PAYOUT_SATS, f"bench floor payout {i}")["payment_request"]
        self.hub.decodepayreq(request)
        payout = self.hub.send_payment(request, timeout_s=120, fee_limit_sats=100)
        payer.join(120)
        for what, outcome in (("payout", payout), ("buyer's payment", payer.outcome)):
            if outcome.get("status") != "SUCCEEDED":
                raise RuntimeError(f"floor escrow {i}: {what} {outcome.get('status')}: "
                                   f"{outcome.get('failure_reason') or outcome.get('error')}")


def judge(world: World, market: Market, balances_before: dict, started_at: float) -> dict:
    """The oracle on every order of the run, on node truth; a summary of what it found."""
    orders, offset = [], 0
    while True:
        page = world.market.orders(world.admin, offset, PAGE)
        orders += [o["id"] for o in page["items"]]
        offset += PAGE
        if offset >= page["total"]:
            break
    parties = market.buyers + market.sellers
    cx = oracle.Context(settings={**world.market.rules(), "_start": started_at},
                        user_nodes={p.id: p.node.name for p in parties if p.node is not None})
    ev = evidence.gather(world, orders, parties, balances_before, started_at)
    found = oracle.check(ev, cx)
    violations = [f"{v.invariant} order {v.order_id}: {v.message}" for vs in found.values() for v in vs]
    return {"orders_checked": len(ev.orders), "invariants": len(found), "violations": len(violations),
            "passed": not violations, "first_violations": violations[:5]}


def run(env: ClusterEnv, escrows: int = 200, concurrency: int = 16, raw: int | None = None,
        topology: str = "hub", attach: str | None = None, progress: Callable[[str], None] = lambda _m: None,
        db: str = "sqlite", app_processes: int = 1, floor: int | None = None, floor_hold_s: float = 0.0,
        waits: str = "push") -> dict:
    """``raw`` and ``floor`` are the baselines' counts (default: as many as escrows; a floor of 0
    skips it); ``floor_hold_s`` how long each floor escrow is held before its settle; ``waits``
    how the client learns that an order is FUNDED and RELEASED (WAITS)."""
    if waits not in WAITS:
        raise ValueError(f"waits must be one of {', '.join(WAITS)}, not {waits!r}")
    with app_database(db, "bench_escrow") as database_pid:
        result = _run(env, escrows, concurrency, raw, topology, attach, progress, app_processes, database_pid,
                      floor, floor_hold_s, waits)
    result["database"] = "sqlite_wal" if db == "sqlite" else db
    result["app_processes"] = app_processes
    if app_processes > 1:  # each process counts its own; /health is answered by one of them
        result["counters_note"] = (f"db_queries_per_escrow, lnd_calls_per_escrow and wakes_per_escrow are "
                                   f"one process's of {app_processes}, not their sum")
    run_dir = Path(result["run_dir"])
    result.update(report.plot_or_note(result, run_dir / "bench-escrow.png"))
    (run_dir / "bench-escrow.json").write_text(json.dumps(result, indent=2))
    return result


def _run(env: ClusterEnv, escrows: int, concurrency: int, raw: int | None, topology: str, attach: str | None,
         progress: Callable[[str], None], app_processes: int = 1, database_pid: int | None = None,
         floor: int | None = None, floor_hold_s: float = 0.0, waits: str = "push") -> dict:
    raw = raw if raw is not None else escrows
    floor = floor if floor is not None else escrows
    run_dir = new_run_dir(env.runs_dir, "bench-escrow")
    cluster = launcher.attached(env, attach) if attach else launcher.launch(load_topology(topology), env, progress)
    world = World(cluster, run_dir, functools.partial(ReferenceMarketplace, processes=app_processes,
                                                      push_waits=waits == "push"))
    try:
        world.start_app(APP_SETTINGS)
        market = Market(world, waits)
        pids = {"app": world.market.daemon.pid, "bitcoind": cluster.bitcoind.daemon.pid,
                **{f"lnd-{n}": node.daemon.pid for n, node in cluster.nodes.items()}}
        if database_pid is not None:  # the server and its backends, with the app's cost, not the raw payments'
            pids["postgres"] = database_pid
        nodes = {k: p for k, p in pids.items() if k not in ("app", "postgres")}
        # The raw baseline in two halves, one before the escrows and one after them: a baseline run
        # only before moved with whatever the machine and the fresh nodes did then (a raw payment's
        # CPU ranged 0.048-0.067 s across six runs of 2026-12-07), and the ratios with it.
        halves = [_raw(market, nodes, raw - raw // 2, concurrency, progress, "before the escrows")]
        floored = _floor(market, nodes, floor, concurrency, progress, floor_hold_s)
        progress(f"escrows through the app: {escrows}, {concurrency} at a time")
        evidence.wait_quiet(cluster, set())  # the raw payments' last commitment updates, then the balances
        balances_before, started_at = evidence.channel_balances(cluster), time.time()
        cpu0, bench0 = {k: cpu_seconds(p) for k, p in pids.items()}, _own_cpu_s()
        threads0 = {k: threads.sample(p) for k, p in pids.items()}
        counters0, reads0 = read_work_counters(world.market), world.market.order_reads
        unpushed0 = world.market.unpushed_waits
        figures = _timed_pool(escrows, concurrency, market.escrow, progress, "escrow")
        order_reads = world.market.order_reads - reads0
        unpushed = world.market.unpushed_waits - unpushed0
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
        threads1 = {k: threads.sample(p) for k, p in pids.items()}
        app_thread_names = threads.python_thread_names(pids["app"])  # (after the window: py-spy stops it)
        counters = counts_between(counters0, read_work_counters(world.market))
        cpu["bench-client"] = _own_cpu_s() - bench0
        progress("oracle: judging every escrow on node truth")
        verdict = judge(world, market, balances_before, started_at)
        if raw // 2:
            evidence.wait_quiet(cluster, set())
            halves.append(_raw(market, nodes, raw // 2, concurrency, progress, "after the escrows"))
    finally:
        world.stop_app()
        if not attach:
            cluster.stop()
    done = max(1, figures["done"])
    cpu_escrow = sum(v for k, v in cpu.items() if k != "bench-client") / done
    baseline = _joined(*(run for run, _cpu, _when in halves))
    raw_cpu = {k: sum(half_cpu[k] for _run, half_cpu, _when in halves) for k in halves[0][1]}
    cpu_raw = sum(raw_cpu.values()) / max(1, baseline["done"])
    if floored.get("escrows_per_s") and baseline["per_s"]:  # the most any app could reach here
        floored["ratio_to_raw"] = round(floored["escrows_per_s"] / baseline["per_s"], 3)
        floored["cpu_ratio_to_raw"] = round(floored["cpu_s_per_escrow_total"] / cpu_raw, 2) if cpu_raw else None
    return {
        "escrows": figures["done"], "failed": figures["failed"], "oracle": verdict,
        "escrows_per_s": figures["per_s"], "p50_s": figures["p50_s"], "p99_s": figures["p99_s"],
        "wall_s": figures["wall_s"], "errors": figures["errors"],
        # how the client learnt of FUNDED and RELEASED, and the order reads (GET /orders/{id}) it made
        "waits": market.waits, **({"poll_interval_s": POLL_S} if market.waits == "poll" else {}),
        "order_reads_per_escrow": round(order_reads / done, 1),
        # pushed waits that only the fallback read ended (HttpMarketplace.FALLBACK_S): the order was
        # in the state and the buyer's stream had not said so. 0 for an app whose pushes arrive.
        **({"unpushed_waits": unpushed} if market.waits == "push" else {}),
        "phase_p50_s": {p: percentiles(v)["p50_s"] for p, v in market.phases.items()},
        # Where the machine's time went during the escrow phase: CPU seconds per escrow, by process.
        "cpu_s_per_escrow": {k: round(v / done, 4) for k, v in sorted(cpu.items())},
        # Summed over the nodes and the app (not the benchmark's own client), beside a raw payment's.
        "cpu_s_per_escrow_total": round(cpu_escrow, 4),
        "cpu_s_per_raw_payment": {k: round(v / max(1, baseline["done"]), 4) for k, v in sorted(raw_cpu.items())},
        "cpu_s_per_raw_payment_total": round(cpu_raw, 4),
        "cpu_ratio_escrow_to_raw": round(cpu_escrow / cpu_raw, 2) if cpu_raw else None,
        # How often the kernel switched each process's threads out, and the app's CPU thread by
        # thread (bench/threads.py): hand-overs between threads cost CPU no Python profile shows.
        "switches_per_escrow": {k: threads.switches(threads0[k], threads1[k], done) for k in sorted(threads1)},
        "app_threads": threads.by_thread(threads0["app"], threads1["app"], app_thread_names, done),
        "db_queries_per_escrow": round(counters.get("db_queries", 0) / done, 1),
        "lnd_calls_per_escrow": round(counters.get("lnd_calls", 0) / done, 1),
        "lnd_calls_per_escrow_by_method": {k: round(v / done, 2) for k, v in
                                           sorted(counters.get("lnd_calls_by_method", {}).items()) if v},
        # with several app processes: the hints one sent to the owners of other orders, and lost
        "wakes_per_escrow": {"sent": round(counters.get("wakes_sent", 0) / done, 1),
                             "dropped": round(counters.get("wakes_dropped", 0) / done, 1)},
        # and its rings to the other processes' notification streams (one per commit that notifies)
        "rings_per_escrow": {"sent": round(counters.get("rings_sent", 0) / done, 1),
                             "dropped": round(counters.get("rings_dropped", 0) / done, 1)},
        "baseline": {"what": "raw LND: seller addinvoice + buyer SendPaymentV2 through the hub",
                     "payments": baseline["done"], "failed": baseline["failed"],
                     "payments_per_s": baseline["per_s"], "p50_s": baseline["p50_s"], "p99_s": baseline["p99_s"],
                     "errors": baseline["errors"],
                     # the two halves apart: how far the nodes' own pace moved across the run
                     "halves": [{"when": when, "payments": run["done"], "payments_per_s": run["per_s"],
                                 "cpu_s_per_payment_total": round(sum(half_cpu.values()) / max(1, run["done"]), 4)}
                                for run, half_cpu, when in halves]},
        "ratio": round(figures["per_s"] / baseline["per_s"], 3) if baseline["per_s"] else None,
        "floor": floored,
        # the app's rate and CPU beside the floor's: what the app itself costs over the nodes' own work
        "ratio_to_floor": (round(figures["per_s"] / floored["escrows_per_s"], 3)
                           if floored.get("escrows_per_s") else None),
        "cpu_ratio_escrow_to_floor": (round(cpu_escrow / floored["cpu_s_per_escrow_total"], 2)
                                      if floored.get("cpu_s_per_escrow_total") else None),
        "concurrency": concurrency, "price_sats": PRICE_SATS, "topology": cluster.topology.name,
        "run_dir": str(run_dir), "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }


def _raw(market: Market, nodes: dict, n: int, concurrency: int, progress: Callable[[str], None],
         when: str) -> tuple[dict, dict, str]:
    """``n`` raw payments: their figures, the nodes' CPU meanwhile, and ``when`` they ran."""
    progress(f"raw LND invoice+pay, {when}: {n} payments, {concurrency} at a time")
    figures, cpu = _cpu_during(nodes, lambda: _timed_pool(n, concurrency, market.raw_payment, progress, "raw"))
    return figures, cpu, when


def _cpu_during(pids: dict, run: Callable[[], dict]) -> tuple[dict, dict]:
    """``run()``'s result and the CPU seconds each of ``pids`` spent meanwhile."""
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    result = run()
    return result, {k: cpu_seconds(p) - before[k] for k, p in pids.items()}


def _floor(market: Market, nodes: dict, n: int, concurrency: int, progress: Callable[[str], None],
           hold_s: float = 0.0) -> dict:
    """The floor baseline: ``n`` escrows' node calls with no app (Market.floor_escrow), their
    rate, latency and the nodes' CPU each, beside the raw rate run just before."""
    what = "the nodes alone: an escrow's hub, buyer and seller calls made by the benchmark, no app"
    if market.hub is None or n == 0:
        return {"what": what, "skipped": "no hub node in the topology" if n else "--floor 0"}
    progress(f"floor (an escrow's node calls, no app): {n} escrows, {concurrency} at a time")
    evidence.wait_quiet(market.world.cluster, set())
    figures, cpu = _cpu_during(nodes, lambda: _timed_pool(n, concurrency, functools.partial(
        market.floor_escrow, hold_s=hold_s), progress, "floor"))
    done = max(1, figures["done"])
    return {"what": what, "hold_s": hold_s, "escrows": figures["done"], "failed": figures["failed"],
            "escrows_per_s": figures["per_s"], "p50_s": figures["p50_s"], "p99_s": figures["p99_s"],
            "cpu_s_per_escrow": {k: round(v / done, 4) for k, v in sorted(cpu.items())},
            "cpu_s_per_escrow_total": round(sum(cpu.values()) / done, 4), "errors": figures["errors"]}


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.escrow", description=__doc__.splitlines()[0])
    parser.add_argument("--escrows", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--raw", type=int, default=None, help="baseline payments (default: as many as escrows)")
    parser.add_argument("--floor", type=int, default=None,
                        help="floor escrows, node calls with no app (default: as many as escrows; 0 skips)")
    parser.add_argument("--floor-hold-s", type=float, default=0.0,
                        help="hold each floor escrow this long before its settle (default 0)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--app-processes", type=int, default=1)
    parser.add_argument("--waits", choices=WAITS, default="push",
                        help="how the buyers learn of FUNDED and RELEASED (default push)")
    args = parser.parse_args(argv)
    result = run(ClusterEnv.from_environ(), args.escrows, args.concurrency, args.raw,
                 progress=lambda m: print(m, file=sys.stderr, flush=True), db=args.db,
                 app_processes=args.app_processes, floor=args.floor,
                 floor_hold_s=args.floor_hold_s, waits=args.waits)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
