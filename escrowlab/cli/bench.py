"""`escrowlab bench`: benchmarks that print JSON figures (never timed tests)."""

from __future__ import annotations

import typer

from bench import cluster as cluster_bench

from .common import console, emit_json, env, progress

app = typer.Typer(help="Benchmarks that print JSON figures.", no_args_is_help=True)


@app.command("cluster")
def cluster_cmd(
    topology: str = typer.Option("hub", "--topology", "-t", help="Topology file or shipped name."),
    repeat: int = typer.Option(1, "--repeat", min=1, max=20, help="Bring-ups to run; figures are per run plus the median."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Time cluster bring-up: command start to every declared channel active."""
    with progress("benchmarking cluster bring-up", quiet=json_out) as step:
        result = cluster_bench.run(env(), topology, repeat, step)
    if json_out:
        emit_json(result)
    else:
        for k, v in result.items():
            if k != "runs":
                console.print(f"{k}: {v}")
