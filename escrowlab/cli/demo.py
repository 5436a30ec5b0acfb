"""`escrowlab demo`: the main job. Brings up the hub topology, serves the
marketplace, runs three escrows (released, refunded, disputed and split) and
prints every party's balance change from LND next to the expected amount."""

from __future__ import annotations

import typer
from rich.table import Table

from regtest_cluster import launcher
from regtest_cluster.topology import load
from scenarios import demo as story

from .common import console, emit_json, env, progress


def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the run folder afterwards."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run three real escrows on the hub topology, check balances on node truth, tear down."""
    e = env()
    with progress("escrowlab demo", quiet=False) as step:
        cluster = launcher.launch(load("hub"), e, step)
        result = None
        try:
            result = story.run(cluster, cluster.run_dir / "app", step)
        finally:
            cluster.stop()
            if result is None or not result["ok"]:
                console.print(f"[red]demo failed; run folder kept:[/] {cluster.run_dir}")
            elif not keep:
                cluster.remove_run_dir()
    result["bringup_s"] = round(cluster.timings.bringup_s, 2)
    if json_out:
        emit_json(result)
    else:
        for o in result["orders"]:
            console.print(f"order {o['id']}: {o['price_sats']:,} sats -> [bold]{o['outcome']}[/]")
        table = Table(title="balance changes: LND's channel balances against the escrow rules")
        for col in ("node", "expected Δ sats", "LND Δ sats", ""):
            table.add_column(col, justify="right" if "sats" in col else "left")
        for b in result["balances"]:
            table.add_row(b["node"], f"{b['expected_delta_sats']:+,}", f"{b['lnd_delta_sats']:+,}",
                          "[green]✓[/]" if b["ok"] else "[red]✗[/]")
        console.print(table)
        console.print(f"cluster bring-up {result['bringup_s']} s; everything stopped")
    if not result["ok"]:
        raise typer.Exit(1)
