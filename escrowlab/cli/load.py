"""`escrowlab load`: Locust load against the app on the hub cluster, with budgets.

This process never imports locust (it monkeypatches everything at import):
``loadtests.orchestrate`` runs it as ``python -m locust`` subprocesses.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .common import UserError, console, emit_json, env, progress


def load(
    profile: str = typer.Option("steady", "--profile", "-p",
                                help="Shipped profile (steady, ramp, spike, soak) or a YAML file."),
    users: int = typer.Option(10, "--users", "-u", min=1, max=5_000, help="Browsers and buyers at the profile's peak."),
    spawn_rate: float = typer.Option(None, "--spawn-rate", "-r", min=0.01, max=1_000,
                                     help="Users started a second, in every stage (default: the profile's)."),
    duration: str = typer.Option(None, "--duration", "-d", "--run-time", "-t",
                                 help="Run length, e.g. 60s, 5m, 1h30m (default: the profile's)."),
    headless: bool = typer.Option(False, "--headless", help="No web UI; otherwise Locust's UI runs on --web-port."),
    html: Path = typer.Option(None, "--html", metavar="FILE",
                              help="Also write Locust's HTML report here (it is always in the run folder)."),
    csv_prefix: Path = typer.Option(None, "--csv", metavar="PREFIX",
                                    help="Also write Locust's CSVs as PREFIX_stats.csv, PREFIX_stats_history.csv, "
                                         "PREFIX_failures.csv, PREFIX_exceptions.csv."),
    stop_timeout: float = typer.Option(30.0, "--stop-timeout", min=0, max=3_600,
                                       help="Seconds a stopping user has to finish its task (0: kill it mid-request, "
                                            "so an order it was creating is missing from Locust's counts)."),
    budgets: Path = typer.Option(None, "--budgets", "-b", help="Budgets YAML; a broken budget exits 1."),
    workers: int = typer.Option(0, "--workers", "-w", "--processes", min=-1, max=64,
                                help="Local Locust workers (a master plus K workers; -1: one per CPU)."),
    remote_workers: int = typer.Option(0, "--remote-workers", min=0, max=256,
                                       help="Also wait for this many workers started on other machines."),
    master_port: int = typer.Option(None, "--master-port", min=1, max=65535,
                                    help="Locust master port (fixed, for remote workers)."),
    attach: str = typer.Option(None, "--attach",
                               help="Use this detached cluster instead of starting one."),
    topology: str = typer.Option("hub", "--topology", help="The cluster to start: a topology file or shipped name "
                                 "(hub-soak: channels whose buyers' sides last a 30-minute soak)."),
    web_port: int = typer.Option(8089, "--web-port", min=1, max=65535, help="Locust web UI port (without --headless)."),
    price: int = typer.Option(1_000, "--price", min=1_000, help="Price of each listed item, sats."),
    dispute_ratio: float = typer.Option(0.05, "--dispute-ratio", min=0, max=1,
                                        help="Share of delivered orders disputed."),
    seed: int = typer.Option(None, "--seed", help="Seed for the users' choices (default: a fresh one, logged)."),
    oracle: bool = typer.Option(True, "--oracle/--no-oracle",
                                help="Afterwards, end every order the run created and check the invariants."),
    db: str = typer.Option("sqlite", "--db", help="The app's database: sqlite (WAL) or postgres (a throwaway "
                                                   "server, stopped afterwards)."),
    app_processes: int = typer.Option(1, "--app-processes", min=1, max=16,
                                      help="App processes (API + worker each) on one port; needs --db postgres."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run Locust users (browse, buy and pay, ship, deliver, rule) and report.

    Locust's own flags work too: -t/--run-time, -u/--users, -r/--spawn-rate, --processes,
    --headless, --html, --csv, --stop-timeout. Exit 1 on a broken budget or when the oracle finds a violated
    invariant; exit 2 when the run could not be judged (the reports are written all the same)."""
    from loadtests.budgets import BudgetError
    from loadtests.orchestrate import LoadError, LoadOptions, run
    from loadtests.profiles import ProfileError
    from regtest_cluster.postgres import DATABASES, PostgresError, PostgresNotInstalled
    from regtest_cluster.topology import TopologyError

    if remote_workers and not master_port:
        raise UserError("--remote-workers needs --master-port, the port the remote workers connect to")
    if attach and topology != "hub":
        raise UserError("--topology starts a cluster and --attach uses one: give one of them")
    if db not in DATABASES:
        raise UserError(f"--db must be sqlite or postgres, not {db!r}")
    if workers == -1:
        workers = os.cpu_count() or 1
    opts = LoadOptions(profile=profile, users=users, duration=duration, headless=headless, budgets=budgets,
                       workers=workers, remote_workers=remote_workers, master_port=master_port, attach=attach,
                       topology=topology, web_port=web_port, price_sats=price, dispute_ratio=dispute_ratio, seed=seed,
                       oracle=oracle, spawn_rate=spawn_rate, stop_timeout_s=stop_timeout, html=html.resolve() if html else None,
                       csv_prefix=csv_prefix.resolve() if csv_prefix else None, db=db, app_processes=app_processes)
    try:
        with progress("load run", quiet=json_out) as step:
            result = run(opts, env(), step)
    except (ProfileError, BudgetError, LoadError, TopologyError) as exc:
        raise UserError(str(exc)) from None
    except (PostgresNotInstalled, PostgresError) as exc:
        raise UserError(f"--db postgres: {exc}") from None
    if json_out:
        emit_json(result.summary)
    else:
        console.print((result.run_dir / "summary.md").read_text(), markup=False)
        console.print(f"reports in {result.run_dir} (locust.html, summary.json, load.png, memory.png, cpu.png)", markup=False)
        for copy in result.summary["files"].get("copies", []):
            console.print(f"copied to {copy}", markup=False)
    for breach in result.breaches:
        console.print(f"budget broken: {breach}", style="bold red", markup=False)
    for violation in result.summary.get("oracle", {}).get("violations", []):
        console.print(f"oracle: {violation['invariant']} order {violation['order_id']}: {violation['message']}",
                      style="bold red", markup=False)
    if result.cluster_dir:
        console.print(f"cluster run folder kept: {result.cluster_dir}", markup=False)
    if result.error:
        console.print(f"error: {result.error}", style="bold red", markup=False, emoji=False)
        console.print(f"the reports are written all the same: {result.run_dir / 'summary.json'}", markup=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
