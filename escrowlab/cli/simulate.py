"""`escrowlab simulate`: the simpy marketplace model, or the same agents against the real cluster."""

from __future__ import annotations

import typer

from regtest_cluster.rundir import new_run_dir

from .common import UserError, console, emit_json, env, progress


def simulate(
    config: str = typer.Option(..., "--config", "-c",
                               help="Simulator YAML, or a shipped config by name (e.g. year-10k)."),
    mode: str = typer.Option("model", "--mode", help="model: simpy only; live: drive the reference app and "
                                                     "hub cluster in compressed time."),
    days: float = typer.Option(None, "--days", min=0.01, help="Override run.duration_days (model mode)."),
    load: float = typer.Option(None, "--load", min=0.001, help="Override run.load_multiplier (model mode)."),
    orders: int = typer.Option(None, "--orders", min=1, help="Override live.orders (live mode)."),
    update_golden: str = typer.Option(None, "--update-golden", metavar="PATH",
                                      help="Write this run's summary as the golden file PATH (deliberate)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report document as JSON."),
) -> None:
    """Capacity planning: time series, distributions and which resource binds first."""
    from reports import capacity as report
    from simulator import config as sim_config
    from simulator import golden, model

    try:
        cfg = sim_config.load(config)
    except sim_config.SimConfigError as exc:
        raise UserError(str(exc)) from None
    if mode not in ("model", "live"):
        raise UserError(f"--mode must be model or live, not {mode!r}")
    run_dir = new_run_dir(env().runs_dir, f"sim-{mode}-{cfg.name}")
    with progress(f"simulating {cfg.name} ({mode})", quiet=json_out) as step:
        step(f"seed {cfg.run.seed}; run folder {run_dir}")
        if mode == "model":
            main, verdict = model.capacity(cfg, step, days=days, multiplier=load)
            doc = {"mode": "model", "config": sim_config.as_dict(cfg), "summary": main.summary, "verdict": verdict,
                   "performance": {"events": main.events, "wall_s": round(main.wall_s, 2),
                                   "events_per_s": round(main.events / main.wall_s)}}
            paths = report.write(run_dir, doc, main.recorder.series, main.recorder.channel_slots)
        else:
            from simulator import live

            doc, series, slots = live.run(cfg, env(), run_dir, step, orders=orders)
            paths = report.write(run_dir, doc, series, slots)
    if update_golden:
        golden.write(update_golden, doc["summary"])
        console.print(f"golden summary written to {update_golden}")
    if json_out:
        emit_json({**{k: v for k, v in doc.items() if k != "summary"},
                   "summary": golden.view(doc["summary"]), "reports": paths})
    else:
        s = doc["summary"]
        console.print(f"[bold]{doc['verdict']['text']}[/]")
        console.print(f"orders {s['orders']['arrivals']:,} · success rate {s['orders']['success_rate']} · "
                      f"dispute rate {s['disputes']['rate']} · failed funding {s['orders']['failed_funding']}")
        if doc.get("live"):
            lv = doc["live"]
            console.print(f"live: {lv['measured']} · oracle violations {len(lv['violations'])}")
        console.print(f"reports: {paths['html']}")
    if doc.get("live") and (doc["live"]["violations"] or doc["live"]["error"]):
        raise typer.Exit(1)
