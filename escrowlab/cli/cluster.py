"""`escrowlab cluster`: start, inspect, drive and stop a regtest cluster."""

from __future__ import annotations

import signal
import typer
from rich.table import Table

from regtest_cluster import launcher
from regtest_cluster.state import status as cluster_status
from regtest_cluster.topology import TOPOLOGY_DIR, load

from .common import console, emit_json, env, progress

app = typer.Typer(help="Start, inspect, drive and stop a regtest cluster.", no_args_is_help=True)

TOPOLOGY_OPT = typer.Option(str(TOPOLOGY_DIR / "hub.yaml"), "--topology", "-t",
                            help="Topology YAML file, or a shipped name (hub, line).")
NAME_OPT = typer.Option("default", "--name", help="Name of the detached cluster (several may run at once).")
JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def print_status(st: dict) -> None:
    b = st["bitcoind"]
    console.print(f"[bold]{st['topology']}[/]  run folder {st['run_dir']}")
    console.print(f"bitcoind {b['rpc_url']}  height {b.get('height', '?')}  "
                  f"{'[green]running[/]' if b.get('running') else '[red]down[/]'}")
    table = Table()
    for col in ("node", "role", "on-chain sats", "channels active", "local / remote sats"):
        table.add_column(col)
    for n in st["nodes"]:
        if not n.get("running"):
            table.add_row(n["name"], n["role"], "[red]down[/]", "-", "-")
            continue
        local = sum(c["local_sats"] for c in n["channels"])
        remote = sum(c["remote_sats"] for c in n["channels"])
        ok = n["active_channels"] >= n["expected_channels"]
        table.add_row(n["name"], n["role"], f"{n['onchain_confirmed_sats']:,}",
                      f"{'[green]' if ok else '[red]'}{n['active_channels']}/{n['expected_channels']}[/]",
                      f"{local:,} / {remote:,}")
    console.print(table)


@app.command()
def up(
    topology: str = TOPOLOGY_OPT,
    detach: bool = typer.Option(False, "--detach", "-d", help="Leave the cluster running and return."),
    name: str = NAME_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Start the topology: bitcoind, every LND, funding and channels, all active.

    Without --detach the cluster runs until Ctrl-C and is then torn down.
    """
    e = env()
    topo = load(topology)
    if detach:
        launcher.check_name_free(e, name)
    with progress(f"starting {topo.name}", quiet=False) as step:
        cluster = launcher.launch(topo, e, step)
    detached = False
    try:
        if detach:
            path = launcher.detach(cluster, e, name)
            detached = True
            console.print(f"[green]cluster {topo.name} is up[/] (state file {path}); "
                          "`escrowlab cluster down` stops it")
        st = cluster_status(cluster)
        emit_json(st) if json_out else print_status(st)
        if detach:
            return
        console.print("cluster running; press Ctrl-C to stop it")
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass  # Ctrl-C or SIGTERM is how a foreground cluster is meant to end
    except BaseException:
        if not detached:
            cluster.stop()
            console.print(f"[red]failed; run folder kept:[/] {cluster.run_dir}")
        raise
    if not detached:
        cluster.stop()
        cluster.remove_run_dir()
        console.print("cluster stopped")


@app.command()
def status(name: str = NAME_OPT, json_out: bool = JSON_OPT) -> None:
    """Endpoints, credentials, balances and channels of the detached cluster."""
    st = cluster_status(launcher.attached(env(), name))
    if json_out:
        emit_json(st)
    else:
        print_status(st)
    if not st["all_channels_active"]:
        raise typer.Exit(1)


@app.command()
def mine(blocks: int = typer.Argument(..., min=1, max=10_000, help="How many blocks."),
         name: str = NAME_OPT, json_out: bool = JSON_OPT) -> None:
    """Mine blocks in steps, letting every LND sync between steps."""
    height = launcher.attached(env(), name).mine(blocks)
    emit_json({"height": height}) if json_out else console.print(f"mined {blocks}; height {height}")


@app.command()
def fund(node: str = typer.Argument(..., help="Node name from the topology."),
         sats: int = typer.Argument(..., min=1, help="Amount in satoshis."),
         name: str = NAME_OPT, json_out: bool = JSON_OPT) -> None:
    """Send sats on-chain to a node from the miner wallet and confirm them."""
    txid = launcher.attached(env(), name).fund(node, sats)
    emit_json({"node": node, "sats": sats, "txid": txid}) if json_out else console.print(f"funded {node}: {txid}")


@app.command()
def pay(src: str = typer.Argument(..., metavar="FROM", help="Paying node."),
        dst: str = typer.Argument(..., metavar="TO", help="Receiving node (issues the invoice)."),
        sats: int = typer.Argument(..., min=1, help="Amount in satoshis."),
        name: str = NAME_OPT, json_out: bool = JSON_OPT) -> None:
    """Pay a Lightning invoice from one node to another, routed over the channels."""
    p = launcher.attached(env(), name).pay(src, dst, sats)
    result = {"from": src, "to": dst, "sats": sats, "status": p["status"], "fee_sats": int(p.get("fee_sat", 0)),
              "payment_hash": p["payment_hash"], "hops": len((p.get("htlcs") or [{}])[-1].get("route", {}).get("hops", []))}
    emit_json(result) if json_out else console.print(
        f"{src} -> {dst}: {sats} sats {p['status']}, fee {result['fee_sats']} sats over {result['hops']} hops")


@app.command()
def down(name: str = NAME_OPT,
         keep: bool = typer.Option(False, "--keep", help="Keep the run folder (logs, node dirs)."),
         json_out: bool = JSON_OPT) -> None:
    """Stop the detached cluster; nothing is left running."""
    result = launcher.down(env(), name, keep)
    emit_json(result) if json_out else console.print(f"cluster stopped ({result['run_dir']}"
                                                     f"{' kept' if keep else ' removed'})")
