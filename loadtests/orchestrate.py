"""``escrowlab load``: cluster and app up, Locust in its own processes, report, budgets.

Locust monkeypatches the whole process at import, so this module never imports
it: it writes a plan file and runs ``python -m locust -f loadtests/locustfile.py``
(a master and K workers with ``workers``). While Locust runs, a thread samples
the hub's held HTLCs (the sats locked in escrow, as node truth).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from regtest_cluster import launcher
from regtest_cluster.cluster import Cluster
from regtest_cluster.env import ClusterEnv
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.ports import PortAllocator
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import load as load_topology
from scenarios.world import ADMIN, World

from . import budgets as budgets_mod
from .profiles import load_profile, parse_duration

LOCUSTFILE = Path(__file__).parent / "locustfile.py"
COURIER = "fastship"
# Trade windows long enough that no deadline fires during a load run; tokens that outlive a soak.
# Every virtual user calls from this one address, which the per-address rate limits are not for.
APP_SETTINGS = dict(funding_timeout_blocks=144, ship_window_blocks=144, delivery_window_blocks=144,
                    dispute_window_blocks=144, ruling_window_blocks=500, worker_interval_s=0.2,
                    access_token_ttl_s=12 * 3600, rate_limits_enabled=False)


@dataclass
class LoadOptions:
    profile: str = "steady"
    users: int = 10
    duration: str | None = None
    headless: bool = True
    budgets: Path | None = None
    workers: int = 0
    remote_workers: int = 0            # workers started by hand on other machines (see the README)
    master_port: int | None = None     # fixed, for remote workers; default: a free port
    attach: str | None = None          # a detached cluster's name; None: start the hub topology
    topology: str = "hub"
    web_port: int = 8089
    price_sats: int = 1_000
    dispute_ratio: float = 0.05
    seed: int | None = None            # None: a fresh one, logged and written to the plan


@dataclass
class LoadResult:
    run_dir: Path
    summary: dict
    breaches: list = field(default_factory=list)
    locust_exit: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.breaches or self.locust_exit not in (0, 1) else 0


class LoadError(RuntimeError):
    """Locust could not run (not a broken budget); the message says where its log is."""


class LockedSampler(threading.Thread):
    """Every second: the sats held in the hub's incoming HTLCs, and how many."""

    def __init__(self, cluster: Cluster, out: Path, hub: str = "hub") -> None:
        super().__init__(name="locked-sats", daemon=True)
        self.rest, self.out, self.stop_event = cluster.node(hub).rest, out, threading.Event()

    def run(self) -> None:
        t0 = time.time()
        with self.out.open("w") as f:
            f.write("t_s,locked_sats,held_htlcs\n")
            while not self.stop_event.wait(1.0):
                try:
                    htlcs = [h for ch in self.rest.listchannels() for h in ch.get("pending_htlcs", [])
                             if h.get("incoming")]
                except LndError:
                    continue  # a busy node skips a sample; the plot shows the gap
                f.write(f"{time.time() - t0:.1f},{sum(int(h['amount']) for h in htlcs)},{len(htlcs)}\n")
                f.flush()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


def locust_argv(plan: Path, run_dir: Path, opts: LoadOptions, role: str = "local", master_port: int = 0) -> list[str]:
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--plan", str(plan),
            "--loglevel", "WARNING"]
    if role == "worker":
        return base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
    argv = base + ["--csv", str(run_dir / "locust"), "--csv-full-history", "--html", str(run_dir / "locust.html")]
    argv += ["--headless"] if opts.headless else ["--autostart", "--autoquit", "5", "--web-port", str(opts.web_port)]
    if role == "master":
        argv += ["--master", "--expect-workers", str(opts.workers + opts.remote_workers),
                 "--master-bind-port", str(master_port)]
    return argv


def run_locust(plan: Path, run_dir: Path, opts: LoadOptions, deadline_s: float) -> int:
    """Run Locust (and its workers) to the end of the shape; return the master's exit code."""
    procs: list[subprocess.Popen] = []
    logs = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    distributed = opts.workers or opts.remote_workers
    port = (opts.master_port or PortAllocator().take()) if distributed else 0
    try:
        log = (run_dir / "locust.log").open("w")
        logs.append(log)
        master = subprocess.Popen(locust_argv(plan, run_dir, opts, "master" if distributed else "local", port),
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=run_dir)
        procs.append(master)
        for i in range(opts.workers):
            wlog = (run_dir / f"locust-worker-{i + 1}.log").open("w")
            logs.append(wlog)
            procs.append(subprocess.Popen(locust_argv(plan, run_dir, opts, "worker", port), stdout=wlog,
                                          stderr=subprocess.STDOUT, env=env, cwd=run_dir))
        try:
            return master.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            raise LoadError(f"Locust did not finish within {deadline_s:.0f}s; see {run_dir / 'locust.log'}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


def write_plan(path: Path, world: World, opts: LoadOptions, stages: list[dict], profile) -> None:
    plan = {"app_url": world.app.url, "state_file": str(world.state_file),
            "courier": {"name": COURIER, "secret": world.courier_secret(COURIER)},
            "admin": {"email": ADMIN[0], "password": ADMIN[1]},
            "stages": stages, "mix": profile.mix, "fixed": profile.fixed,
            "processes": max(1, opts.workers + opts.remote_workers),
            "price_sats": opts.price_sats, "dispute_ratio": opts.dispute_ratio, "seed": opts.seed,
            "buyer_nodes": [n for n, node in world.cluster.nodes.items() if node.role == "buyer"],
            "seller_nodes": [n for n, node in world.cluster.nodes.items() if node.role == "seller"]}
    path.write_text(json.dumps(plan, indent=2))
    os.chmod(path, 0o600)  # it holds the admin's and the courier's secrets


def run(opts: LoadOptions, env: ClusterEnv, progress: Callable[[str], None] = lambda _m: None) -> LoadResult:
    from reports import load as report  # matplotlib is only needed once the run is over

    profile = load_profile(opts.profile)
    budgets = budgets_mod.load_budgets(opts.budgets) if opts.budgets else budgets_mod.DEFAULT
    duration_s = parse_duration(opts.duration or profile.default_duration)
    stages = profile.plan(opts.users, duration_s, max(1, opts.workers + opts.remote_workers))
    run_dir = new_run_dir(env.runs_dir, f"load-{profile.name}")
    if opts.seed is None:
        opts.seed = random.randrange(2**31)
    progress(f"run folder {run_dir}, seed {opts.seed}")
    if opts.attach:
        cluster = launcher.attached(env, opts.attach)
    else:
        progress(f"starting the {opts.topology} cluster")
        cluster = launcher.launch(load_topology(opts.topology), env, progress)
    world = World(cluster, run_dir)
    sampler = None
    try:
        progress("starting the marketplace")
        world.start_app(APP_SETTINGS)
        plan = run_dir / "plan.json"
        write_plan(plan, world, opts, stages, profile)
        sampler = LockedSampler(cluster, run_dir / "locked_sats.csv")
        sampler.start()
        progress(f"Locust: profile {profile.name}, {opts.users} users, {duration_s:.0f}s"
                 + (f", {opts.workers} workers" if opts.workers else ""))
        if opts.remote_workers:
            progress(f"waiting for {opts.remote_workers} remote worker(s) on port {opts.master_port}; plan {plan}")
        rc = run_locust(plan, run_dir, opts, deadline_s=duration_s + 120 + (600 if opts.remote_workers else 0))
        sampler.stop()
        if not (run_dir / "locust_stats.csv").is_file():
            raise LoadError(f"Locust exited {rc} without statistics; see {run_dir / 'locust.log'}")
        summary = report.build(run_dir, duration_s, profile.name, opts.users, opts.workers)
        if not summary["totals"]["requests"]:
            raise LoadError(f"Locust made no requests (exit {rc}); see {run_dir / 'locust.log'}")
        summary["seed"] = opts.seed
        breaches = budgets_mod.check(budgets, summary)
        summary["budgets"] = {"file": str(opts.budgets) if opts.budgets else None,
                              "breaches": [str(b) for b in breaches], "passed": not breaches}
        report.write(run_dir, summary)
        return LoadResult(run_dir, summary, breaches, rc)
    finally:
        if sampler and sampler.is_alive():
            sampler.stop()
        world.stop_app()
        if not opts.attach:
            cluster.stop()
