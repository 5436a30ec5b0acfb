"""`escrowlab nodes`: provision and inspect node binaries."""

from __future__ import annotations

import typer
from rich.table import Table

from regtest_cluster.provision import doctor as doctor_report, install as install_binaries

from .common import console, emit_json, env, progress

app = typer.Typer(help="Provision and inspect the bitcoind and LND binaries.", no_args_is_help=True)


@app.command()
def install(
    force: bool = typer.Option(False, "--force", help="Rebuild even when cached."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Get bitcoind (Debian sid's Bitcoin Knots) and build LND; cached, idempotent."""
    e = env()
    with progress("installing node binaries", quiet=False) as step:
        bins = install_binaries(e, step, force=force)
    result = {k: str(v) for k, v in vars(bins).items()}
    if json_out:
        emit_json(result)
    else:
        for k, v in result.items():
            console.print(f"[green]✓[/] {k}: {v}")


@app.command()
def doctor(json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Show which binaries are installed, where they live and their versions."""
    report = doctor_report(env())
    if json_out:
        emit_json(report)
    else:
        table = Table(title=f"node binaries (cache {report['cache_dir']})")
        for col in ("binary", "source", "path", "version"):
            table.add_column(col)
        for name, b in report["binaries"].items():
            table.add_row(name, b["source"] or "[red]missing[/]", b["path"] or "-", b["version"] or "-")
        console.print(table)
        tools = ", ".join(f"{t}: {'yes' if p else 'no'}" for t, p in report["tools"].items())
        console.print(f"tools on PATH: {tools}")
        if report["hint"]:
            console.print(f"[yellow]{report['hint']}[/]")
    if not report["ok"]:
        raise typer.Exit(1)
