"""``escrowlab load``: cluster and app up, Locust in its own processes, report, budgets.

Locust monkeypatches the whole process at import, so this module never imports
it: it writes a plan file and runs ``python -m locust -f loadtests/locustfile.py``
(a master and K workers with ``workers``). While Locust runs, threads sample
the hub's held HTLCs (the sats locked in escrow, as node truth) and the memory
of the app and every node. Afterwards the oracle ends and judges every order
the run created (``loadtests.oracle_check``).
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from regtest_cluster import launcher
from regtest_cluster.env import ClusterEnv
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.ports import PortAllocator
from regtest_cluster.postgres import app_database
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import load as load_topology
from regtest_cluster.waiting import WaitTimeout
from harness import evidence
from harness.driver import counts_between, read_work_counters
from harness.actors import ApiError
from harness.http import ReferenceMarketplace
from harness.presets import LOAD_SETTINGS
from harness.world import ADMIN, World

from . import budgets as budgets_mod
from . import oracle_check
from .samplers import LiquiditySampler, LockedSampler, ProbeSampler, ProcessSampler, process_pids
from .profiles import load_profile, parse_duration

LOCUSTFILE = Path(__file__).parent / "locustfile.py"
COURIER = "fastship"
# No block is mined while Locust runs, so no block window fires then; once it stops, the
# oracle's drain mines past these windows to end the orders left open (the shorter, the
# quicker). Tokens outlive a soak. Every virtual user calls from this one address, which
# the per-address rate limits are not for.
APP_SETTINGS = LOAD_SETTINGS
DRAIN_MAX_BLOCKS = 200


@dataclass
class LoadOptions:
    profile: str = "steady"
    users: int = 10
    duration: str | None = None
    headless: bool = True
    budgets: Path | None = None
    workers: int = 0
    remote_workers: int = 0            # workers started by hand on other machines (docs/load.md)
    master_port: int | None = None     # fixed, for remote workers; default: a free port
    attach: str | None = None          # a detached cluster's name; None: start ``topology``
    topology: str = "hub"              # a topology file or shipped name
    web_port: int = 8089
    price_sats: int = 1_000
    dispute_ratio: float = 0.05
    seed: int | None = None            # None: a fresh one, logged and written to the plan
    oracle: bool = True                # end every order afterwards and check the invariants on it
    spawn_rate: float | None = None    # users started a second in every stage (None: the profile's)
    html: Path | None = None           # also copy Locust's HTML report here
    csv_prefix: Path | None = None     # also copy Locust's CSVs to PREFIX_stats.csv, ... (as Locust's --csv)
    # Seconds a user stopped by a ramp-down or the run's end has to finish its task (Locust's
    # --stop-timeout). Locust's default, 0, kills it mid-request: an order the app created
    # then never reaches Locust's counts, and the report's counts disagree with the oracle's.
    stop_timeout_s: float = 30.0
    db: str = "sqlite"                 # the app's database: sqlite (WAL) or postgres (a throwaway server)
    app_processes: int = 1             # app processes (API and worker each) on one port; PostgreSQL only


@dataclass
class LoadResult:
    run_dir: Path
    summary: dict
    breaches: list = field(default_factory=list)
    locust_exit: int = 0
    cluster_dir: Path | None = None    # the cluster's run folder, kept after a failed run (None: removed)

    @property
    def error(self) -> str | None:
        """Why the run could not be judged (the oracle's wait for in-flight HTLCs timed out)."""
        return self.summary.get("oracle", {}).get("error")

    @property
    def exit_code(self) -> int:
        if self.error:
            return 2
        oracle_failed = not self.summary.get("oracle", {}).get("passed", True)
        return 1 if self.breaches or oracle_failed or self.locust_exit not in (0, 1) else 0


LOCUST_CSVS = ("stats", "stats_history", "failures", "exceptions")


def copy_reports(run_dir: Path, opts: LoadOptions) -> list[Path]:
    """Locust's own HTML and CSVs, copied where ``--html`` and ``--csv`` asked (as Locust names them)."""
    copied = []
    wanted = [(run_dir / "locust.html", opts.html)] if opts.html else []
    if opts.csv_prefix:
        wanted += [(run_dir / f"locust_{kind}.csv", Path(f"{opts.csv_prefix}_{kind}.csv")) for kind in LOCUST_CSVS]
    for src, dst in wanted:
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied.append(dst)
    return copied


class LoadError(RuntimeError):
    """Locust could not run (not a broken budget); the message says where its log is."""


def locust_argv(plan: Path, run_dir: Path, opts: LoadOptions, role: str = "local", master_port: int = 0) -> list[str]:
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--plan", str(plan),
            "--loglevel", "WARNING"]
    if role == "worker":
        return base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
    argv = base + ["--csv", str(run_dir / "locust"), "--csv-full-history", "--html", str(run_dir / "locust.html"),
                   "--stop-timeout", f"{opts.stop_timeout_s:g}"]
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
    plan = {"app_url": world.market.url, "state_file": str(world.market.state_file),
            "courier": {"name": COURIER, "secret": world.market.courier_secret(COURIER)},
            "admin": {"email": ADMIN[0], "password": ADMIN[1]},
            "stages": stages, "mix": profile.mix, "fixed": profile.fixed,
            "processes": max(1, opts.workers + opts.remote_workers),
            "parties_file": str(path.parent / "parties.jsonl"),
            "streams_file": str(path.parent / "streams.jsonl"),
            "price_sats": opts.price_sats, "dispute_ratio": opts.dispute_ratio, "seed": opts.seed,
            "buyer_nodes": [n for n, node in world.cluster.nodes.items() if node.role == "buyer"],
            "seller_nodes": [n for n, node in world.cluster.nodes.items() if node.role == "seller"]}
    path.write_text(json.dumps(plan, indent=2))
    os.chmod(path, 0o600)  # it holds the admin's and the courier's secrets
    parties = path.parent / "parties.jsonl"  # the traders' logins, for the oracle afterwards
    parties.touch(mode=0o600)
    (path.parent / "streams.jsonl").touch()  # what the traders' notification streams sent, for I18


def plan_stages(profile, opts: LoadOptions, duration_s: float) -> tuple[list[dict], int]:
    """The shape's stages (``--spawn-rate`` replacing every stage's rate) and the fixed users
    (sellers, couriers, arbiters) that Locust runs besides ``--users``."""
    processes = max(1, opts.workers + opts.remote_workers)
    stages = profile.plan(opts.users, duration_s, processes)
    if opts.spawn_rate:
        stages = [{**stage, "spawn_rate": opts.spawn_rate} for stage in stages]
    return stages, sum(profile.fixed.values()) * processes


def run(opts: LoadOptions, env: ClusterEnv, progress: Callable[[str], None] = lambda _m: None) -> LoadResult:
    profile = load_profile(opts.profile)
    budgets = budgets_mod.load_budgets(opts.budgets) if opts.budgets else budgets_mod.DEFAULT
    duration_s = parse_duration(opts.duration or profile.default_duration)
    stages, fixed_users = plan_stages(profile, opts, duration_s)
    topology = None if opts.attach else load_topology(opts.topology)  # a bad one is refused before anything starts
    if opts.app_processes > 1 and opts.db != "postgres":
        raise LoadError("several app processes share a PostgreSQL database (SQLite is served by one): "
                        "add --db postgres")
    with app_database(opts.db, "escrowlab_load") as database_pid:
        return _run(opts, env, progress, profile, budgets, duration_s, stages, fixed_users, topology, database_pid)


def _run(opts: LoadOptions, env: ClusterEnv, progress: Callable[[str], None], profile, budgets, duration_s: float,
         stages: list[dict], fixed_users: int, topology, database_pid: int | None) -> LoadResult:
    from reports import load as report  # matplotlib is only needed once the run is over

    run_dir = new_run_dir(env.runs_dir, f"load-{profile.name}")
    if opts.seed is None:
        opts.seed = random.randrange(2**31)
    progress(f"run folder {run_dir}, seed {opts.seed}")
    if opts.attach:
        cluster = launcher.attached(env, opts.attach)
    else:
        progress(f"starting the {opts.topology} cluster")
        # inside the run's folder: a clean run removes it, a failed one keeps it with the reports
        cluster = launcher.launch(topology, env, progress, run_dir=run_dir / "cluster")
    world = World(cluster, run_dir, functools.partial(ReferenceMarketplace, processes=opts.app_processes))
    samplers = []
    result: LoadResult | None = None
    try:
        progress("starting the marketplace" + (f" ({opts.app_processes} processes)" if opts.app_processes > 1 else "")
                 + (" on PostgreSQL" if database_pid else ""))
        world.start_app(APP_SETTINGS)
        plan = run_dir / "plan.json"
        write_plan(plan, world, opts, stages, profile)
        balances_before, started_at = evidence.channel_balances(cluster), time.time()
        work_before = read_work_counters(world.market)
        every = min(10.0, max(1.0, duration_s / 360))  # about 360 samples a run, 1 to 10 s apart
        samplers = [LockedSampler(cluster, run_dir / "locked_sats.csv"),
                    LiquiditySampler(cluster, run_dir / "liquidity.csv"),
                    ProcessSampler({**process_pids(cluster, world.market.daemon.pid),
                                    **({"postgres": database_pid} if database_pid else {})},
                                   run_dir / "memory.csv", interval_s=every),
                    ProbeSampler(run_dir / "probe.csv", interval_s=every)]
        for sampler in samplers:
            sampler.start()
        progress(f"Locust: profile {profile.name}, {opts.users} users, {duration_s:.0f}s"
                 + (f", {opts.workers} workers" if opts.workers else ""))
        if opts.remote_workers:
            progress(f"waiting for {opts.remote_workers} remote worker(s) on port {opts.master_port}; plan {plan}")
        rc = run_locust(plan, run_dir, opts, deadline_s=duration_s + 120 + opts.stop_timeout_s + (600 if opts.remote_workers else 0))
        for sampler in samplers:
            sampler.stop()
        work = counts_between(work_before, read_work_counters(world.market))
        if not (run_dir / "locust_stats.csv").is_file():
            raise LoadError(f"Locust exited {rc} without statistics; see {run_dir / 'locust.log'}")
        copies = copy_reports(run_dir, opts)  # Locust's own reports are final now, whatever the oracle finds
        summary = report.build(run_dir, duration_s, profile.name, opts.users, opts.workers, fixed_users)
        summary["files"]["copies"] = [str(p) for p in copies]
        if not summary["totals"]["requests"]:
            raise LoadError(f"Locust made no requests (exit {rc}); see {run_dir / 'locust.log'}")
        summary["app_work"] = report.work_figures(work, summary["totals"]["escrows_settled"])
        if opts.app_processes > 1:  # each process counts its own; /health is answered by one of them
            summary["app_work"]["note"] = (f"one process's statements and hub calls of {opts.app_processes}, "
                                           "not their sum")
        summary["seed"] = opts.seed
        summary["database"] = "sqlite_wal" if opts.db == "sqlite" else opts.db
        summary["app_processes"] = opts.app_processes
        summary["spawn_rate"] = opts.spawn_rate
        if opts.oracle:
            try:
                summary["oracle"] = oracle_check.check(world, run_dir, APP_SETTINGS, balances_before, started_at,
                                                       DRAIN_MAX_BLOCKS, progress)
            except oracle_check.OracleSkipped as exc:
                summary["oracle"] = {"skipped": str(exc), "passed": True}
            except (WaitTimeout, LndError, ApiError) as exc:  # not judged; the reports are still written
                summary["oracle"] = {"passed": False, "error": f"the oracle could not finish: {exc}"}
        breaches = budgets_mod.check(budgets, summary)
        summary["budgets"] = {"file": str(opts.budgets) if opts.budgets else None,
                              "breaches": [str(b) for b in breaches], "passed": not breaches,
                              "not_checked": unchecked(budgets, summary)}
        report.write(run_dir, summary)
        result = LoadResult(run_dir, summary, breaches, rc)
        return result
    finally:
        for sampler in samplers:
            if sampler.is_alive():
                sampler.stop()
        world.stop_app()
        if not opts.attach:
            cluster.stop()
            if result is not None and result.exit_code == 0:
                cluster.remove_run_dir()
            elif result is not None:
                result.cluster_dir = cluster.run_dir
            else:
                progress(f"failed; cluster run folder kept: {cluster.run_dir}")


def unchecked(budgets: budgets_mod.Budgets, summary: dict) -> list[str]:
    """Budgets the run could not check: a memory slope it was too short to estimate."""
    if budgets.totals.max_memory_slope_mib_per_h is None or "memory_slope_mib_per_h" in summary["totals"]:
        return []
    notes = sorted({m.get("slope_note") or "no samples" for m in summary.get("memory", {}).values()}) or ["no samples"]
    return [f"totals: max_memory_slope_mib_per_h not checked ({'; '.join(notes)})"]
