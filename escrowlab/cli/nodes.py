"""`escrowlab nodes`: provision and inspect node binaries."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import console, emit_json, env, progress

app = typer.Typer(help="Provision and inspect the bitcoind and LND binaries.", no_args_is_help=True)


@app.command()
def install(
    force: bool = typer.Option(False, "--force", help="Rebuild even when cached."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ldk: bool = typer.Option(False, "--ldk", help="Also build ldkd, the LDK node (cargo; long when cold)."),
) -> None:
    """Get bitcoind (Debian sid's Bitcoin Knots) and build LND (and with --ldk, ldkd); cached, idempotent."""
    from regtest_cluster.provision import install as install_binaries, ldk as ldk_provision

    e = env()
    with progress("installing node binaries", quiet=False) as step:
        bins = install_binaries(e, step, force=force)
        ldkd = None
        if ldk:
            ldkd = ldk_provision.from_environ()
            if ldkd is not None:
                step("ldkd: using LDKD from the environment")
            else:
                ldkd = ldk_provision.install(e.cache_dir, step, force=force, status=getattr(step, "status", None))
    result = {k: str(v) for k, v in vars(bins).items()}
    if ldkd is not None:
        result["ldkd"] = str(ldkd)
    if json_out:
        emit_json(result)
    else:
        for k, v in result.items():
            console.print(f"[green]✓[/] {k}: {v}")


@app.command()
def doctor(json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Show which binaries are installed, where they live and their versions."""
    from regtest_cluster.provision import doctor as doctor_report, ldk as ldk_provision

    e = env()
    report = doctor_report(e)
    report["optional"] = {"ldkd": ldk_provision.doctor(e.cache_dir)}
    if json_out:
        emit_json(report)
    else:
        table = Table(title=f"node binaries (cache {report['cache_dir']})")
        for col in ("binary", "source", "path", "version"):
            table.add_column(col)
        for name, b in report["binaries"].items():
            table.add_row(name, b["source"] or "[red]missing[/]", b["path"] or "-", b["version"] or "-")
        for name, b in report["optional"].items():
            table.add_row(f"{name} (optional)", b["source"] or "[yellow]missing[/]", b["path"] or "-",
                          b["version"] or "-")
        console.print(table)
        tools = ", ".join(f"{t}: {'yes' if p else 'no'}" for t, p in report["tools"].items())
        console.print(f"tools on PATH: {tools}")
        if report["hint"]:
            console.print(f"[yellow]{report['hint']}[/]")
        for b in report["optional"].values():
            if b.get("hint"):
                console.print(b["hint"])
    if not report["ok"]:
        raise typer.Exit(1)
