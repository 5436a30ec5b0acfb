"""`escrowlab bench`: benchmarks that print JSON figures (never timed tests)."""

from __future__ import annotations

import typer

from .common import UserError, console, emit_json, env, progress

app = typer.Typer(help="Benchmarks that print JSON figures.", no_args_is_help=True)


@app.command("cluster")
def cluster_cmd(
    topology: str = typer.Option("hub", "--topology", "-t", help="Topology file or shipped name."),
    repeat: int = typer.Option(1, "--repeat", min=1, max=20, help="Bring-ups to run; figures are per run plus the median."),
    backend: str = typer.Option(None, "--backend", help="process (default) or docker."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Time cluster bring-up: command start to every declared channel active."""
    from bench import cluster as cluster_bench

    with progress("benchmarking cluster bring-up", quiet=json_out) as step:
        result = cluster_bench.run(env(), topology, repeat, step, backend=backend)
    if json_out:
        emit_json(result)
    else:
        for k, v in result.items():
            if k != "runs":
                console.print(f"{k}: {v}")


@app.command("sim")
def sim_cmd(
    config: str = typer.Option("simulator/configs/year-10k.yaml", "--config", "-c", help="Simulator YAML."),
    days: float = typer.Option(30.0, "--days", min=0.1, help="Simulated days to run."),
    repeat: int = typer.Option(1, "--repeat", min=1, max=10, help="Runs; best rate of each, ratios best over best."),
    sweep_points: int = typer.Option(0, "--sweep-points", min=0, max=256,
                                     help="Also time a capacity run with a load sweep of this many points "
                                          "(0: none); sweep.core_use says how busy it kept every core."),
    sweep_days: float = typer.Option(2.0, "--sweep-days", min=0.1, help="Simulated days of each sweep point."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Simulator speed: simpy events our model processes a second, beside a raw simpy loop."""
    from bench import sim

    with progress("benchmarking the simulator", quiet=json_out):
        result = sim.run(config, days, repeat, sweep_points, sweep_days)
    if json_out:
        emit_json(result)
    else:
        for k in ("events_per_s", "raw_simpy_events_per_s", "ratio", "orders_per_s", "load_average"):
            console.print(f"{k}: {result[k]}")
        if "sweep" in result:
            t = result["sweep"]
            console.print(f"sweep: {t['sweep_points']} points and the main run, {t['days']} days each, in "
                          f"{t['wall_s']} s; {t['cores_used']} of {t['cores']} cores busy (core_use {t['core_use']})")


@app.command("onchain")
def onchain_cmd(
    n: int = typer.Option(500, "--n", min=1, max=20_000, help="Escrows to fund and release."),
    batch: int = typer.Option(125, "--batch", min=1, max=2_000, help="Escrows funded in one block."),
    workers: int = typer.Option(8, "--workers", min=1, max=64, help="Threads issuing RPCs."),
    fee_rate: float = typer.Option(2.0, "--fee-rate", min=1.0, help="Release fee rate, sat/vB."),
    wallet_fsync: bool = typer.Option(False, "--wallet-fsync", help="Durable wallet writes (slower)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """2-of-3 multisig escrows through the PSBT flow: fund + release cycles per minute."""
    from bench import onchain

    with progress("benchmarking on-chain escrows", quiet=json_out) as step:
        result = onchain.run(n=n, batch=batch, workers=workers, fee_rate_sat_vb=fee_rate,
                             wallet_fsync=wallet_fsync, env=env(), progress=step)
    if json_out:
        emit_json(result)
    else:
        for k in ("escrows", "fund_release_per_min", "block_weight_used", "wallet_fsync"):
            console.print(f"{k}: {result[k]}")


@app.command("escrow")
def escrow_cmd(
    escrows: int = typer.Option(200, "--escrows", min=1, max=100_000, help="Escrows to run end to end."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, max=400, help="Escrows in flight at once."),
    raw: int = typer.Option(None, "--raw", min=1, help="Baseline raw LND payments (default: as many as escrows)."),
    floor: int = typer.Option(None, "--floor", min=0,
                              help="Floor escrows: an escrow's node calls made with no app, the most any app "
                                   "could reach (default: as many as escrows; 0 skips)."),
    floor_hold_s: float = typer.Option(0.0, "--floor-hold-s", min=0.0, max=600.0,
                                       help="Hold each floor escrow this long before its settle, as a ship "
                                            "and a confirm would (the nodes' cost at an app's pace)."),
    topology: str = typer.Option("hub", "--topology", "-t", help="Topology file or shipped name."),
    attach: str = typer.Option(None, "--attach", help="Use this detached cluster instead of starting one."),
    db: str = typer.Option("sqlite", "--db", help="The app's database: sqlite (WAL) or postgres (throwaway)."),
    app_processes: int = typer.Option(1, "--app-processes", min=1, max=16,
                                      help="App processes (API + worker each) on one port; use --db postgres."),
    waits: str = typer.Option("push", "--waits",
                              help="How the buyers learn an order is FUNDED, then RELEASED: push (the app's "
                                   "notification stream wakes them) or poll (GET the order every 0.2 s)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Hold-invoice escrows settled per second through the app, beside raw LND invoice+pay."""
    from bench import escrow
    from harness.http import HttpMarketplace

    from regtest_cluster.postgres import DATABASES, PostgresError, PostgresNotInstalled

    if db not in DATABASES:
        raise UserError(f"--db must be sqlite or postgres, not {db!r}")
    if waits not in escrow.WAITS:
        raise UserError(f"--waits must be push or poll, not {waits!r}")
    try:
        with progress("benchmarking escrows", quiet=json_out) as step:
            result = escrow.run(env(), escrows, concurrency, raw, topology, attach, step, db=db,
                                app_processes=app_processes, floor=floor, floor_hold_s=floor_hold_s, waits=waits)
    except (PostgresNotInstalled, PostgresError) as exc:
        raise UserError(f"--db postgres: {exc}") from None
    if json_out:
        emit_json(result)
    else:
        for k in ("escrows", "failed", "escrows_per_s", "p50_s", "p99_s", "ratio"):
            console.print(f"{k}: {result[k]}")
        console.print(f"baseline payments_per_s: {result['baseline']['payments_per_s']}")
        if result.get("unpushed_waits"):
            console.print(f"[yellow]{result['unpushed_waits']} waits for FUNDED or RELEASED were not woken by the "
                          f"app's notification stream within {HttpMarketplace.FALLBACK_S:g} s, though the order had "
                          f"reached the state (a lost or very late notification)[/yellow]")
        if "escrows_per_s" in result["floor"]:
            console.print(f"floor (no app) escrows_per_s: {result['floor']['escrows_per_s']}, "
                          f"ratio to raw {result['floor'].get('ratio_to_raw')}; "
                          f"the app's ratio to the floor: {result['ratio_to_floor']}")
        if result.get("app_threads"):
            top = ", ".join(f"{name} {t['cpu_s_per_escrow'] * 1000:.1f} ms"
                            for name, t in list(result["app_threads"].items())[:4])
            switched = result["switches_per_escrow"]["app"]
            console.print(f"the app's CPU an escrow by thread: {top}; its threads were switched out "
                          f"{switched['voluntary'] + switched['involuntary']:.0f} times an escrow")
        console.print(f"picture: {result['plot']}" if result["plot"] else result["plot_note"])
    _oracle_verdict(result["oracle"], json_out)


@app.command("holds")
def holds_cmd(
    n: int = typer.Option(None, "--n", min=1, max=20_000,
                          help="Escrows to hold at once (default: the topology's HTLC slots allow, 900 on hub)."),
    payout_holds: int = typer.Option(0, "--payout-holds", min=0, max=2_000,
                                     help="Also hold this many payouts at their sellers, and compare other "
                                          "escrows' release latency with and without them."),
    idle: float = typer.Option(15.0, "--idle", min=1, max=600, help="Seconds to sample the app while it only holds."),
    topology: str = typer.Option("hub", "--topology", "-t", help="Topology file or shipped name."),
    holders: str = typer.Option(None, "--holders",
                                help="Nodes (comma-separated) the sellers who hold their payouts live on; default: "
                                     "the seller nodes, whose channels every other payout shares. The hub-holds "
                                     "topology has a node of their own: --topology hub-holds --holders holder."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Hold N escrows at once: the app's memory, threads and CPU while holding, then the time to release them all."""
    from bench import holds
    from regtest_cluster.topology import load as load_topology

    holder_list = [h.strip() for h in holders.split(",") if h.strip()] if holders else None
    try:
        holds.holder_nodes(load_topology(topology), holder_list)
    except ValueError as exc:  # before any node starts
        raise UserError(str(exc)) from None
    with progress("benchmarking held escrows", quiet=json_out) as step:
        result = holds.run(env(), n, payout_holds, idle_s=idle, topology=topology, progress=step, holders=holder_list)
    if json_out:
        emit_json(result)
    else:
        for k in ("open", "held_htlcs_at_hub", "app_while_holding", "release", "payout_holds"):
            if k in result:
                console.print(f"{k}: {result[k]}")
    if "oracle" in result:
        _oracle_verdict(result["oracle"], json_out)


def _oracle_verdict(verdict: dict, json_out: bool) -> None:
    """Say what the oracle found on the run's orders; a run that lost or mis-paid anything fails
    (exit 1) whatever its figures, as a scenario does (the JSON has the verdict as well)."""
    if verdict["passed"]:
        if not json_out:
            console.print(f"oracle: {verdict['invariants']} invariants held on all {verdict['orders_checked']} orders")
        return
    console.print(f"oracle: {verdict['violations']} violations on the run's {verdict['orders_checked']} orders; "
                  f"the first:", style="red", markup=False)
    for line in verdict["first_violations"]:
        console.print(f"  {line}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command("api")
def api_cmd(
    seconds: float = typer.Option(10, "--seconds", min=1, max=3600, help="Length of each phase (ping, reads, writes)."),
    concurrency: int = typer.Option(32, "--concurrency", min=1, max=1_000, help="Requests in flight at once."),
    postgres: bool = typer.Option(True, "--postgres/--no-postgres", help="Also measure on a throwaway PostgreSQL."),
    app_processes: int = typer.Option(1, "--app-processes", min=1, max=16,
                                      help="Also measure PostgreSQL with the app (and the ping) served by this "
                                           "many processes."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Reads/s and writes/s on SQLite WAL and PostgreSQL, beside a bare FastAPI ping app."""
    from bench import api

    if app_processes > 1 and not postgres:
        raise UserError("--app-processes above 1 measures PostgreSQL (SQLite is served by one process): "
                        "drop --no-postgres")
    with progress("benchmarking the API", quiet=json_out) as step:
        result = api.run(env(), seconds, concurrency, postgres, progress=step, app_processes=app_processes)
    if json_out:
        emit_json(result)
        return
    _print_api(result)
    if "app_processes" in result:
        many = result["app_processes"]
        console.print(f"[bold]{many['processes']} app processes[/bold]")
        _print_api(many)


def _print_api(result: dict) -> None:
    if "skipped" in result:
        console.print(f"skipped: {result['skipped']}")
        return
    ping = result["baseline_ping"]
    console.print(f"ping baseline: {ping['requests_per_s']} req/s, server CPU {ping['server_cpu_ms_per_request']} ms"
                  " a request")
    for db in ("sqlite_wal", "postgres"):
        figures = result.get(db, {})
        if "skipped" in figures:
            console.print(f"{db}: skipped ({figures['skipped']})")
        for kind in ("reads", "writes"):
            if kind in figures:
                f = figures[kind]
                console.print(f"{db} {kind}: {f['requests_per_s']}/s ({figures[f'{kind}_ratio_to_ping']} of the "
                              f"ping), p99 {f['p99_ms']} ms, server CPU {f['server_cpu_ms_per_request']} ms a "
                              f"request, failed {f['failed']}")
