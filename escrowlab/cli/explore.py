"""`escrowlab explore` and `escrowlab replay`: generated adversarial histories, judged by
the model of the rules and the oracle; failures shrunk to traces that replay."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import typer
from rich.table import Table

from regtest_cluster.rundir import new_run_dir
from reference_app.services.faults import PLANTED_BUGS

from .common import UserError, console, emit_json, env, progress

TRACES = Path(__file__).resolve().parents[2] / "scenarios" / "traces"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def budget_seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise UserError(f"--budget takes a positive duration like 90s, 10m or 1h, got {text!r}")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, "": 1}[match[2]]


def _cluster(backend: str | None, attach: str | None, step):
    from regtest_cluster import launcher
    from regtest_cluster.topology import load

    if attach is not None:
        cluster = launcher.attached(env(), attach)
        return cluster, new_run_dir(env().runs_dir, "explore"), False
    cluster = launcher.launch(load("hub"), env(), step, backend=backend)
    return cluster, cluster.run_dir, True


def explore(
    budget: str = typer.Option("10m", "--budget", help="Wall time to generate histories in, e.g. 3m for CI, 1h "
                                                       "for a nightly run; shrinking a finding takes at most "
                                                       "40 % more."),
    seed: int = typer.Option(None, "--seed", help="Generate the same actions again."),
    planted_bug: str = typer.Option(None, "--planted-bug", help="Switch a deliberate defect on, to watch "
                                                               "exploring find, shrink and replay it."),
    marketplace: str = typer.Option(None, "--marketplace", help="Explore another marketplace: module:Class."),
    modes: str = typer.Option("ln_hold,onchain_multisig,custodial", "--modes",
                              help="Escrow modes to open orders in, comma separated."),
    length: int = typer.Option(24, "--length", help="Steps per history after its first orders."),
    faults: bool = typer.Option(True, "--faults/--no-faults", help="Restart or kill the app, restart a node, "
                                                                   "partition the buyer from the hub."),
    replays: int = typer.Option(12, "--shrink-replays", help="At most this many replays to shrink a failure."),
    to_scenario: Path = typer.Option(None, "--to-scenario", help="Turn this trace into a catalogue scenario "
                                                                 "(scenarios/traces/) and stop."),
    name: str = typer.Option(None, "--name", help="With --to-scenario: the scenario's name."),
    attach: str = typer.Option(None, "--attach", help="Explore on this detached cluster instead of a new one."),
    backend: str = typer.Option(None, "--backend", help="Start the cluster as processes (default) or docker."),
    json_out: bool = typer.Option(False, "--json", help="End with the JSON report on stdout."),
) -> None:
    """Generate escrow histories on the hub cluster: every party tries every action in every
    state, alone and in bursts, blocks land at the deadlines, faults strike. The model of the
    rules judges each answer; the oracle judges node truth. Exit 1 on any finding."""
    from harness.explore import run as explore_run
    from scenarios import runner

    if to_scenario is not None:
        _to_scenario(to_scenario, name)
        return
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = [m for m in chosen if m not in ("ln_hold", "onchain_multisig", "custodial")]
    if unknown or not chosen:
        raise UserError(f"--modes takes ln_hold, onchain_multisig, custodial; got {modes!r}")
    if length < 1:
        raise UserError(f"--length must be at least 1, got {length}")
    seconds = budget_seconds(budget)
    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    market = runner.marketplace(marketplace)
    known = runner.planted_for(market) if market is not None else PLANTED_BUGS
    if planted_bug is not None and planted_bug not in known:
        raise UserError(f"no planted bug {planted_bug!r} (known: {', '.join(known) or 'none'})")
    with progress("explore", quiet=False) as step:
        step(f"seed {seed} (the same actions again with --seed {seed}); budget {seconds:.0f}s")
        cluster, run_dir, owned = _cluster(backend, attach, step)
        try:
            report = explore_run.explore(cluster, run_dir / "explore", seconds, seed, planted_bug, market, step,
                                         max_replays=replays, length=length, modes=chosen, faults=faults)
        finally:
            if owned:
                cluster.stop()
    summary = explore_run.summary(report)
    out = run_dir / "explore" / "explore.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    _print(summary, out)
    if json_out:
        emit_json(summary)
    if summary["findings"]:
        raise typer.Exit(1)


def _print(summary: dict, out: Path) -> None:
    console.print(f"{summary['histories']} histories · {summary['actions']} actions · "
                  f"{summary['requests_judged']} requests judged · {summary['coverage_cells']} "
                  f"state × action × role cells")
    table = Table(title="checks made")
    table.add_column("rule")
    table.add_column("applicable checks", justify="right")
    for rule, n in {**summary["model_checks"], **summary["invariant_checks"]}.items():
        table.add_row(rule, f"{n:,}" if n else "not exercised")
    console.print(table)
    for f in summary["findings"][:20]:
        console.print(f"[red]finding[/] {f['rule']} (history seed {f['history_seed']}, step {f['step']}): "
                      f"{f['message'][:200]}")
    for t in summary["traces"]:
        console.print(f"trace {t['trace']} ({t['steps']} steps) shrunk to {t['shrunk']} ({t['shrunk_steps']} "
                      f"steps, {t['replays']} replays): escrowlab replay {t['shrunk']}")
    console.print("[green]no findings[/]" if summary["passed"] else f"[red]{len(summary['findings'])} findings[/]")
    console.print(f"report: {out}")


def replay(
    trace: Path = typer.Argument(..., help="A trace file written by `escrowlab explore`."),
    planted_bug: str = typer.Option(None, "--planted-bug", help="Override the trace's planted bug "
                                                               "('none' for the fixed app)."),
    marketplace: str = typer.Option(None, "--marketplace", help="Replay against another marketplace."),
    attach: str = typer.Option(None, "--attach", help="Replay on this detached cluster."),
    json_out: bool = typer.Option(False, "--json", help="End with the findings as JSON on stdout."),
) -> None:
    """Rerun a trace's steps on a fresh cluster and judge them again; exit 1 on any finding."""
    from harness.explore import run as explore_run
    from scenarios import runner

    try:
        data = explore_run.read_trace(trace)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    bug = data.get("planted_bug") if planted_bug is None else (None if planted_bug == "none" else planted_bug)
    market = runner.marketplace(marketplace)
    with progress("replay", quiet=False) as step:
        step(f"{len(data['steps'])} steps from {trace}" + (f", planted bug {bug}" if bug else ""))
        cluster, run_dir, owned = _cluster(None, attach, step)
        try:
            outcome = explore_run.run_history(cluster, run_dir / "replay", int(data["seed"]), bug, market,
                                              steps=data["steps"])
        finally:
            if owned:
                cluster.stop()
    for f in outcome.findings:
        console.print(f"[red]finding[/] {f['rule']} (step {f['step']}): {f['message'][:200]}")
    console.print("[green]no findings[/]" if not outcome.findings else f"[red]{len(outcome.findings)} findings[/]")
    if json_out:
        emit_json({"trace": str(trace), "planted_bug": bug, "steps": len(outcome.steps),
                   "findings": outcome.findings, "passed": not outcome.findings})
    if outcome.findings:
        raise typer.Exit(1)


def _to_scenario(trace: Path, name: str | None) -> None:
    from harness.explore import run as explore_run

    try:
        explore_run.read_trace(trace)  # refuse what is not a trace before it joins the catalogue
    except ValueError as exc:
        raise UserError(str(exc)) from None
    name = name or f"trace_{trace.stem.replace('-', '_')}"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UserError(f"--name must be a lower-case identifier, got {name!r}")
    TRACES.mkdir(parents=True, exist_ok=True)
    target = TRACES / f"{name}.json"
    shutil.copyfile(trace, target)
    console.print(f"scenario {name}: {target} (run it with `escrowlab scenario run {name}`)")
