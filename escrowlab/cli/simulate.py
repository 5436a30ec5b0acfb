"""`escrowlab simulate`: the simpy marketplace model, or the same agents against the real cluster."""

from __future__ import annotations

import math

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
    sweep: str = typer.Option(None, "--sweep", metavar="M1,M2,...",
                              help="Load multipliers to re-run the model at (overrides verdict.sweep_multipliers; "
                                   "model mode): each point is a run of its own, beside the main one."),
    sweep_days: float = typer.Option(None, "--sweep-days", min=0.01,
                                     help="Simulated days of each sweep point (overrides verdict.sweep_days)."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, max=256,
                             help="Processes for the sweep's points (default: one per core)."),
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
    for flag, value in (("--days", days), ("--load", load), ("--sweep-days", sweep_days)):
        if value is not None and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, not {value}")
    if sweep is not None or sweep_days is not None:
        cfg = _with_sweep(cfg, sweep, sweep_days)
    run_dir = new_run_dir(env().runs_dir, f"sim-{mode}-{cfg.name}")
    with progress(f"simulating {cfg.name} ({mode})", quiet=json_out) as step:
        step(f"seed {cfg.run.seed}; run folder {run_dir}")
        if mode == "model":
            main, verdict, timing = model.capacity(cfg, step, days=days, multiplier=load, jobs=jobs)
            doc = {"mode": "model", "config": sim_config.as_dict(cfg), "summary": main.summary, "verdict": verdict,
                   "performance": {"events": main.events, "wall_s": round(main.wall_s, 2),
                                   "events_per_s": round(main.events / main.wall_s),
                                   **({"sweep": {**timing.as_dict(), "points": timing.points}}
                                      if timing.points else {})}}
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
        if doc["performance"].get("sweep"):
            t = doc["performance"]["sweep"]
            console.print(f"main run and {t['sweep_points']} sweep points in {t['wall_s']} s, "
                          f"{t['cores_used']} of {t['cores']} cores busy ({t['jobs']} sweep processes)")
        console.print(f"reports: {paths['html']}")
    if doc.get("live") and (doc["live"]["violations"] or doc["live"]["error"]):
        raise typer.Exit(1)


def _with_sweep(cfg, sweep: str | None, sweep_days: float | None):
    """``cfg`` with the sweep's multipliers and days given on the command line."""
    from pydantic import ValidationError

    from simulator import config as sim_config

    try:
        multipliers = None if sweep is None else tuple(float(m) for m in sweep.split(",") if m.strip())
        return sim_config.with_sweep(cfg, multipliers, sweep_days)
    except (ValueError, ValidationError):
        raise UserError(f"--sweep takes load multipliers above 0, separated by commas (e.g. 1,2,4), "
                        f"not {sweep!r}") from None
