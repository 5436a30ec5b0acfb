"""`escrowlab torture`: kill the app mid-escrow or mid-withdrawal, over and over, and count what was lost."""

from __future__ import annotations

import random

import typer
from rich.table import Table

from .common import UserError, console, emit_json, env, progress


def torture(
    runs: int = typer.Option(10, "--runs", help="How many kill-and-restart runs."),
    seed: int = typer.Option(None, "--seed", help="Replay a torture's choices (paths, kills, delays)."),
    json_out: bool = typer.Option(False, "--json", help="End with the JSON summary on stdout."),
    app_processes: int = typer.Option(1, "--app-processes", min=1, max=16,
                                      help="Serve the app as this many processes (app serve --processes)."),
) -> None:
    """On one hub cluster, kill the app (crash point or SIGKILL) in each run, on one of the paths
    (ln_hold release and refund, custodial release, custodial Lightning and on-chain withdrawals,
    on-chain multisig release), restart it, and check the oracle's invariants; exit 1 on any
    failure or any sat lost."""
    from regtest_cluster import launcher
    from regtest_cluster.topology import load
    from scenarios.torture import PATHS
    from scenarios.torture import torture as run_torture

    if runs < 1:
        raise UserError(f"--runs must be at least 1, got {runs}")
    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    with progress("torture", quiet=False) as step:
        step(f"seed {seed} (replay with --seed {seed})")
        cluster = launcher.launch(load("hub"), env(), step)
        try:
            def report(i, plan, result) -> None:
                verdict = "ok" if result.passed else "FAILED"
                step(f"[{i + 1}/{runs}] {plan.path} killed at {plan.label}: {verdict} in {result.duration_s}s")

            summary = run_torture(cluster, cluster.run_dir, runs, seed, report, app_processes)
        finally:
            cluster.stop()
    data = {**summary.as_dict(), "app_processes": app_processes, "run_dir": str(cluster.run_dir)}
    table = Table(title=f"torture, seed {seed}")
    for col in ("runs", "armed but not reached", "escrows checked", "withdrawals checked", "sats lost", "failures"):
        table.add_column(col)
    table.add_row(str(data["runs"]), " ".join(f"{k}={v}" for k, v in sorted(data["missed_points"].items())) or "-",
                  str(data["escrows_checked"]), str(data["withdrawals_checked"]), str(data["sats_lost"]),
                  str(len(data["failures"])))
    console.print(table)
    kills = Table(title="kills by path")
    kills.add_column("path")
    kills.add_column("kills")
    kills.add_column("by point")
    for path in PATHS:
        hit = data["kills_by_path"].get(path, {})
        kills.add_row(path, str(sum(hit.values())), " ".join(f"{k}={v}" for k, v in sorted(hit.items())) or "-")
    console.print(kills)
    for failure in data["failures"]:
        console.print(f"[red]run {failure['run']} {failure['plan']}[/red]: {failure['error'] or ''} "
                      f"{'; '.join(failure['violations'])}")
    if json_out:
        emit_json(data)
    if data["failures"] or data["sats_lost"]:
        raise typer.Exit(1)
