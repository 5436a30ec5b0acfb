"""`escrowlab cluster`: start, inspect, drive and stop a regtest cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from regtest_cluster import TOPOLOGY_DIR
from regtest_cluster.env import BACKENDS, IMAGE_SOURCES

from .common import UserError, console, emit_json, env, name_flag, progress, wait_for_stop

app = typer.Typer(help="Start, inspect, drive and stop a regtest cluster.", no_args_is_help=True)
export_app = typer.Typer(help="Write the topology for Docker Compose or Kubernetes, or a running cluster for SimLN.",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")

TOPOLOGY_OPT = typer.Option(str(TOPOLOGY_DIR / "hub.yaml"), "--topology", "-t",
                            help="Topology YAML file, or a shipped name (hub, line).")
NAME_OPT = typer.Option("default", "--name", help="Name of the detached cluster (several may run at once).")
JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
BACKEND_OPT = typer.Option(None, "--backend", help="process (default, or ESCROWLAB_BACKEND) or docker "
                                                   "(a Docker engine: DOCKER_HOST or the default socket).")
IMAGES_OPT = typer.Option(None, "--images", help="docker backend: local (built FROM scratch from the provisioned "
                                                 "binaries; default) or public (official images, needs a registry).")


def print_status(st: dict) -> None:
    b = st["bitcoind"]
    console.print(f"[bold]{st['topology']}[/] ({st['backend']} backend)  run folder {st['run_dir']}")
    console.print(f"bitcoind {b['rpc_url']}  height {b.get('height', '?')}  "
                  f"{'[green]running[/]' if b.get('running') else '[red]down[/]'}")
    table = Table()
    for col in ("node", "role", "on-chain sats", "channels active", "local / remote sats"):
        table.add_column(col)
    for n in st["nodes"]:
        n = {**n, "role": n["role"] + (" (ldk)" if n.get("impl") == "ldk" else "")}
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


def check_choices(backend: str | None, images: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if images is not None and images not in IMAGE_SOURCES:
        raise UserError(f"--images must be one of {', '.join(IMAGE_SOURCES)}, got {images!r}")


@app.command()
def up(
    topology: str = TOPOLOGY_OPT,
    detach: bool = typer.Option(False, "--detach", "-d", help="Leave the cluster running and return."),
    name: str = NAME_OPT,
    backend: str = BACKEND_OPT,
    images: str = IMAGES_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Start the topology: bitcoind, every LND, funding and channels, all active.

    Without --detach the cluster runs until Ctrl-C and is then torn down. Later
    commands (status, mine, fund, pay, down) follow the backend it was started with.
    """
    from regtest_cluster import launcher
    from regtest_cluster.state import status as cluster_status
    from regtest_cluster.topology import load

    e = env()
    topo = load(topology)
    check_choices(backend, images)
    if detach:
        launcher.check_name_free(e, name)
    with progress(f"starting {topo.name}", quiet=False) as step:
        cluster = launcher.launch(topo, e, step, backend=backend, images=images)
    detached = False
    try:
        if detach:
            path = launcher.detach(cluster, e, name)
            detached = True
            console.print(f"[green]cluster {topo.name} is up[/] (state file {path}); "
                          f"`escrowlab cluster down{name_flag(name)}` stops it")
        st = cluster_status(cluster)
        emit_json(st) if json_out else print_status(st)
        if detach:
            return
        console.print("cluster running; press Ctrl-C to stop it")
        wait_for_stop()
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
    from regtest_cluster import launcher
    from regtest_cluster.state import status as cluster_status

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
    from regtest_cluster import launcher

    height = launcher.attached(env(), name).mine(blocks)
    emit_json({"height": height}) if json_out else console.print(f"mined {blocks}; height {height}")


@app.command()
def fund(node: str = typer.Argument(..., help="Node name from the topology."),
         sats: int = typer.Argument(..., min=1, help="Amount in satoshis."),
         name: str = NAME_OPT, json_out: bool = JSON_OPT) -> None:
    """Send sats on-chain to a node from the miner wallet and confirm them."""
    from regtest_cluster import launcher

    txid = launcher.attached(env(), name).fund(node, sats)
    emit_json({"node": node, "sats": sats, "txid": txid}) if json_out else console.print(f"funded {node}: {txid}")


@app.command()
def pay(src: str = typer.Argument(..., metavar="FROM", help="Paying node."),
        dst: str = typer.Argument(..., metavar="TO", help="Receiving node (issues the invoice)."),
        sats: int = typer.Argument(..., min=1, help="Amount in satoshis."),
        name: str = NAME_OPT, json_out: bool = JSON_OPT) -> None:
    """Pay a Lightning invoice from one node to another, routed over the channels."""
    from regtest_cluster import launcher

    p = launcher.attached(env(), name).pay(src, dst, sats)
    # LND's payment names its route; an LDK payer's does not (hops: null, not 0)
    hops = len(p["htlcs"][-1].get("route", {}).get("hops", [])) if p.get("htlcs") else None
    result = {"from": src, "to": dst, "sats": sats, "status": p["status"], "fee_sats": int(p.get("fee_sat", 0)),
              "payment_hash": p["payment_hash"], "hops": hops}
    route = f" over {hops} hops" if hops is not None else " (the payer's node does not report its route)"
    emit_json(result) if json_out else console.print(
        f"{src} -> {dst}: {sats} sats {p['status']}, fee {result['fee_sats']} sats{route}")


@app.command()
def down(name: str = NAME_OPT,
         keep: bool = typer.Option(False, "--keep", help="Keep the run folder (logs, node dirs)."),
         json_out: bool = JSON_OPT) -> None:
    """Stop the detached cluster; nothing is left running."""
    from regtest_cluster import launcher

    result = launcher.down(env(), name, keep)
    emit_json(result) if json_out else console.print(f"cluster stopped ({result['run_dir']}"
                                                     f"{' kept' if keep else ' removed'})")


OUTPUT_OPT = typer.Option(None, "--output", "-o", help="Write here instead of stdout.")


def _write(text: str, output: Path | None, what: str) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.print(f"wrote {what} to {output}")


@export_app.command("compose")
def export_compose(topology: str = TOPOLOGY_OPT, output: Path | None = OUTPUT_OPT,
                   images: str = IMAGES_OPT) -> None:
    """A docker-compose.yml: bitcoind and every LND with volumes and health checks, plus a
    one-shot `setup` service that funds the nodes and opens the channels."""
    from regtest_cluster.docker import export
    from regtest_cluster.topology import load

    check_choices(None, images)
    _write(export.compose_yaml(load(topology), export.image_names(env(), images)), output, "docker-compose.yml")


@export_app.command("k8s")
def export_k8s(topology: str = TOPOLOGY_OPT, output: Path | None = OUTPUT_OPT,
               images: str = IMAGES_OPT,
               namespace: str = typer.Option("escrowlab", "--namespace", help="Kubernetes namespace.")) -> None:
    """Kubernetes manifests: a Namespace, Secrets for credentials, a StatefulSet and Service
    per node, and a Job that funds the nodes and opens the channels."""
    from regtest_cluster.docker import export
    from regtest_cluster.topology import load

    check_choices(None, images)
    _write(export.k8s_yaml(load(topology), export.image_names(env(), images), namespace), output,
           "Kubernetes manifests")


@export_app.command("simln")
def export_simln(name: str = NAME_OPT, output: Path | None = OUTPUT_OPT,
                 activity: list[str] = typer.Option(
                     None, "--activity", "-a", metavar="SRC:DST:SECS:MSAT[:COUNT[:START]]",
                     help="A defined payment stream, e.g. buyer1:seller1:10:1000000 (every 10 s, 1,000,000 msat); "
                          "repeat for more. Without it, SimLN pays at random among the nodes."),
                 node: list[str] = typer.Option(None, "--node", metavar="NAME",
                                                help="Only these nodes (repeat); default: every LND.")) -> None:
    """SimLN's sim.json for the detached cluster's LND nodes: their gRPC address, admin
    macaroon and TLS certificate, plus any --activity. Run it with `sim-cli --sim-file FILE`."""
    from regtest_cluster import launcher, simln
    from regtest_cluster.state import status as cluster_status

    try:
        specs = [simln.parse_activity(a) for a in activity or []]
        st = cluster_status(launcher.attached(env(), name))
        config = simln.sim_json(st, specs, node or None)
    except simln.SimlnError as exc:
        raise UserError(str(exc)) from None
    _write(json.dumps(config, indent=2) + "\n", output, "SimLN's sim.json")
    for warning in simln.warnings(st, config):
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
