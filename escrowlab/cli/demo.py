"""`escrowlab demo`: the main job. Brings up the hub topology, serves the
marketplace, runs three escrows (released, refunded, disputed and split) and
prints every party's balance change from LND next to the expected amount; then
runs the scenario catalogue and the planted bugs on the same cluster and ends
with their report."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import console, emit_json, env, progress

# Four lanes: on a 2-core machine the catalogue took a third of its serial wall time (docs/scenarios.md).
DEMO_JOBS = 4


def demo(
    catalogue: bool = typer.Option(True, "--catalogue/--no-catalogue",
                                   help="After the three escrows, run the scenario catalogue and planted bugs."),
    seed: int = typer.Option(None, "--seed", help="Seed for the catalogue's decisions."),
    jobs: int = typer.Option(DEMO_JOBS, "--jobs", "-j", min=1,
                             help="Catalogue stories at once, each lane on a hub cluster of its own (the "
                                  "others start while the three escrows run)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run three real escrows, check balances on node truth, then the scenario catalogue."""
    from regtest_cluster import launcher
    from regtest_cluster.topology import load
    from reports import build
    from scenarios import demo as story
    from scenarios import runner
    from scenarios.catalogue import ALL, BUG_SCENARIOS

    e = env()
    scenarios = None
    with progress("escrowlab demo", quiet=False) as step:
        cluster = launcher.launch(load("hub"), e, step)
        result = lanes = None
        try:
            if catalogue and jobs > 1:  # the other lanes' clusters come up while the escrows run
                lanes = runner.EarlyLanes(runner.lane_launcher(e), cluster.run_dir, jobs)
            result = story.run(cluster, cluster.run_dir / "app", step)
            if catalogue:
                # each story in its first escrow mode, as `scenario run --all` takes them
                scenarios = runner.run_on(cluster, list(ALL), seed, "all", list(BUG_SCENARIOS), step,
                                          jobs=jobs, lanes=lanes)
        finally:
            if lanes is not None:
                lanes.close()
            cluster.stop()
            if result is None or not result["ok"]:
                console.print(f"[red]demo failed; run folder kept:[/] {cluster.run_dir}")
            elif scenarios is None:
                cluster.remove_run_dir()  # nothing to report beyond the console
    result["bringup_s"] = round(cluster.timings.bringup_s, 2)
    summary = build.write_all(scenarios) if scenarios else None
    if summary:
        result["scenarios"] = {k: summary[k] for k in ("scenarios", "passed", "failed", "invariants",
                                                       "planted_bugs", "caught", "reports")}
    if json_out:
        emit_json(result)
    else:
        for o in result["orders"]:
            console.print(f"order {o['id']} ({o['mode']}): {o['price_sats']:,} sats -> [bold]{o['outcome']}[/]")
        table = Table(title="balance changes: node truth (LND channels, bitcoind wallets) against the rules")
        for col in ("mode", "party", "expected Δ sats", "node Δ sats", ""):
            table.add_column(col, justify="right" if "sats" in col else "left")
        for b in result["balances"]:
            table.add_row(b["mode"], b["party"], f"{b['expected_delta_sats']:+,}",
                          f"{b['node_delta_sats']:+,}", "[green]✓[/]" if b["ok"] else "[red]✗[/]")
        console.print(table)
        mism = result["reconcile_mismatches"]
        console.print(f"custodial reconciliation: {'[green]0 mismatches[/]' if not mism else f'[red]{mism}[/]'}")
        console.print(f"cluster bring-up {result['bringup_s']} s; everything stopped")
        if summary:
            build.console_summary(console, scenarios, summary)
    if not result["ok"] or (summary and (summary["failed"] or summary["caught"] != summary["planted_bugs"])):
        raise typer.Exit(1)
