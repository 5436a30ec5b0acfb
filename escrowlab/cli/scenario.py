"""`escrowlab scenario`: run escrow scenarios against real nodes and check the invariants."""

from __future__ import annotations

import typer
from rich.table import Table

from reference_app.services.faults import PLANTED_BUGS
from regtest_cluster.env import BACKENDS

from .common import UserError, console, emit_json, env, progress

app = typer.Typer(help="Run escrow scenarios and check invariants on node truth.", no_args_is_help=True)


def _check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


@app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show the scenario catalogue."""
    from scenarios.catalogue import ALL

    rows = [{"name": s.name, "summary": s.summary, "modes": list(s.modes), "anchors": list(s.anchors)}
            for s in ALL.values()]
    if json_out:
        emit_json(rows)
        return
    table = Table(title=f"{len(rows)} scenarios")
    for col in ("name", "summary", "anchors"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["summary"], " ".join(r["anchors"]))
    console.print(table)


@app.command("run")
def run_cmd(
    names: list[str] = typer.Argument(None, help="Scenario names (see `scenario list`)."),
    all_: bool = typer.Option(False, "--all", help="Run the whole catalogue, then every planted bug."),
    seed: int = typer.Option(None, "--seed", help="Replay a run's decisions."),
    mode: str = typer.Option(None, "--mode", help="Run in this escrow mode (ln_hold, onchain_multisig, "
                                                  "custodial); with --all, the scenarios that have it."),
    bugs: bool = typer.Option(None, "--planted-bugs/--no-planted-bugs",
                              help="Also prove the oracle with planted bugs (default: with --all)."),
    planted_bug: str = typer.Option(None, "--planted-bug", help="Run the named scenarios with this deliberate "
                                                               "defect on, to watch the oracle catch it."),
    backend: str = typer.Option(None, "--backend", help="Start the hub cluster as processes (default) or "
                                                         "docker containers."),
    attach: bool = typer.Option(False, "--attach", help="Run on the detached cluster (--name) instead of "
                                                       "starting one; it is left running."),
    name: str = typer.Option("default", "--name", help="With --attach: which detached cluster."),
    marketplace: str = typer.Option(None, "--marketplace", help="Judge another marketplace: module:Class, a "
                                                                "harness.driver.Marketplace (default: the "
                                                                "reference app)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Run this many stories at once, each lane on a hub "
                                                            "cluster of its own (the first is the run's)."),
    json_out: bool = typer.Option(False, "--json", help="End with the JSON summary on stdout."),
) -> None:
    """Run scenarios on the hub topology; exit 1 if any scenario or invariant fails."""
    from reports import build
    from scenarios import runner

    if attach and backend is not None:
        raise UserError("--attach uses the detached cluster as it was started; drop --backend")
    _check_backend(backend)
    if planted_bug is not None and marketplace is None and planted_bug not in PLANTED_BUGS:
        raise UserError(f"no planted bug {planted_bug!r} (known: {', '.join(PLANTED_BUGS)})")
    if not all_ and not names:
        raise UserError("name at least one scenario, or pass --all")
    chosen = runner.of_mode(mode) if all_ else list(names)
    # The planted-bug catalogue is the reference app's; another marketplace declares its own
    market = runner.marketplace(marketplace)
    planted = list(runner.planted_for(market)) if (bugs if bugs is not None else all_) else []
    runner.select(chosen)
    for scenario in chosen:
        runner.mode_for(scenario, mode)
    with progress("scenarios", quiet=False) as step:
        result = runner.run(env(), chosen, seed, mode or "all", planted, step, bug_everywhere=planted_bug,
                            backend=backend, attach=name if attach else None, market=market, jobs=jobs)
    summary = build.write_all(result)
    build.console_summary(console, result, summary)
    if json_out:
        emit_json(summary)
    if summary["failed"] or summary["caught"] != summary["planted_bugs"]:
        raise typer.Exit(1)


# The ln_hold stories the interop matrix takes by default: every outcome, a node crash on each
# side, the payout hand-in and the CLTV cap (the whole ln_hold catalogue: name them, or --all)
INTEROP_DEFAULT = ["release_after_delivery", "buyer_confirms_early", "ship_timeout_refund", "dispute_ruling_split",
                   "seller_offline_at_payout", "buyer_node_crash_while_held", "wrong_amount_payout_invoice",
                   "ldk_payer_over_cltv_cap"]


@app.command("interop")
def interop_cmd(
    names: list[str] = typer.Argument(None, help="Scenario names (default: a fixed subset of the ln_hold "
                                                 "stories; see the docs)."),
    all_: bool = typer.Option(False, "--all", help="Every ln_hold scenario."),
    payers: str = typer.Option("lnd,ldk", "--payers", help="Buyers' implementations, comma-separated."),
    payees: str = typer.Option("lnd,ldk", "--payees", help="Sellers' implementations, comma-separated."),
    seed: int = typer.Option(None, "--seed", help="Replay a run's decisions."),
    planted_bug: str = typer.Option(None, "--planted-bug", help="Run every story with this deliberate defect "
                                                               "on, to watch the oracle catch it on each pair."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Run this many pairs at once, each on its own "
                                                            "hub cluster."),
    backend: str = typer.Option(None, "--backend", help="Start each pair's cluster as processes (default) or "
                                                         "docker containers (partitions are skipped there)."),
    json_out: bool = typer.Option(False, "--json", help="End with the matrix as JSON on stdout."),
) -> None:
    """The interop matrix: ln_hold stories with buyers and sellers on LND and LDK (the hub stays LND).

    One hub cluster per payer x payee pair (--jobs of them at once); writes reports/interop.md and
    interop.json in the run folder. Exit 1 if any story failed. LDK nodes need
    `escrowlab nodes install --ldk` once."""
    import random

    from reports import build
    from scenarios import interop, runner

    if planted_bug is not None and planted_bug not in PLANTED_BUGS:
        raise UserError(f"no planted bug {planted_bug!r} (known: {', '.join(PLANTED_BUGS)})")
    _check_backend(backend)
    chosen = runner.of_mode("ln_hold") if all_ else list(names or INTEROP_DEFAULT)
    payer_impls, payee_impls = ([x.strip().lower() for x in text.split(",") if x.strip()]
                                for text in (payers, payees))
    try:
        interop.pairs(payer_impls, payee_impls)
        runner.select(chosen)
        for scenario in chosen:
            runner.mode_for(scenario, "ln_hold")
    except runner.UnknownScenario as exc:
        raise UserError(str(exc)) from None
    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    with progress("interop", quiet=False) as step:
        # each pair's own scenario reports (every story's steps) beside the matrix
        matrix = interop.run(env(), chosen, payer_impls, payee_impls, seed, step, planted_bug, build.write_all,
                             jobs=jobs, backend=backend or "process")
    table = Table(title=f"interop matrix (seed {seed}): payer -> payee; the hub is LND")
    table.add_column("scenario")
    table.add_column("hold CLTV")
    for a, b in matrix.pairs:
        table.add_column(f"{a.upper()} -> {b.upper()}")
    for n in matrix.names:
        cltvs, cells = matrix.row(n)
        table.add_row(n, ", ".join(map(str, cltvs)) or "-", *[("" if c is None else {"passed": "[green]passed[/]", "FAILED": "[red]FAILED[/]"}
                                  .get(c.verdict, f"[yellow]{c.verdict}[/]")) for c in cells])
    console.print(table)
    for (a, b, n), c in matrix.cells.items():
        if c.error:
            console.print(f"  {n} {a}->{b} {c.verdict}: {c.error}")
    console.print(f"report: {matrix.run_dir / 'reports' / 'interop.md'}")
    if json_out:
        emit_json(matrix.summary())
    if matrix.failed:
        raise typer.Exit(1)


__all__ = ["app", "PLANTED_BUGS"]
