"""`escrowlab demo`: the main job. Brings up the hub topology, routes payments
buyer -> hub -> seller, prints the status, and tears everything down."""

from __future__ import annotations

import typer

from regtest_cluster import launcher
from regtest_cluster.state import status as cluster_status
from regtest_cluster.topology import load

from .cluster import print_status
from .common import console, emit_json, env, progress

PAYMENTS = (("buyer1", "seller1", 25_000), ("buyer2", "seller2", 40_000), ("buyer1", "seller2", 10_000))


def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the run folder afterwards."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the end-to-end demo on the hub topology and tear it down."""
    e = env()
    with progress("escrowlab demo", quiet=False) as step:
        cluster = launcher.launch(load("hub"), e, step)
        failed = True
        try:
            payments = []
            for src, dst, amount in PAYMENTS:
                step(f"paying {amount} sats {src} -> hub -> {dst}")
                p = cluster.pay(src, dst, amount)
                hops = len(p["htlcs"][-1]["route"]["hops"])
                payments.append({"from": src, "to": dst, "sats": amount, "status": p["status"],
                                 "fee_sats": int(p.get("fee_sat", 0)), "hops": hops})
            st = cluster_status(cluster)
            failed = False
        finally:
            cluster.stop()
            if failed:
                console.print(f"[red]demo failed; run folder kept:[/] {cluster.run_dir}")
            elif not keep:
                cluster.remove_run_dir()
    result = {"bringup_s": round(cluster.timings.bringup_s, 2), "payments": payments, "status": st}
    if json_out:
        emit_json(result)
        return
    print_status(st)
    for p in payments:
        console.print(f"[green]✓[/] {p['from']} -> {p['to']}: {p['sats']:,} sats {p['status']} "
                      f"over {p['hops']} hops, routing fee {p['fee_sats']} sats")
    console.print(f"bring-up {result['bringup_s']} s; cluster stopped, nothing left running")
