"""The simulator's speed: simpy events our model processes a second, beside a raw simpy loop.

``events_per_s`` counts the events the model's environment actually processed (event ids
it issued less those still queued, less the planned stages of orders whose funding failed,
which fire only to be dropped), over the event loop's wall time; the actors' bulk draws and
the day planning happen inside that loop and are included. ``raw_simpy_events_per_s`` is a trivial
``yield env.timeout(1)`` loop processing the same number of events in the same process,
under the same conditions (cyclic GC paused for both). ``ratio`` is the first over the second.
An extra, clearly separate baseline, ``raw_simpy_same_depth_events_per_s``, runs that loop in as
many processes as the model has events waiting on average (``mean_pending_events``), so simpy's
queue is as deep as the model's; ``ratio_same_depth`` is against it.
The ``*_cpu_s`` figures divide by this process's CPU time instead of the wall clock: on a
shared machine they leave out the time the process waited for a core. With ``--repeat``, each
rate is its best run and each ratio is best over best.

With ``--sweep-points N``, a capacity run with an N-point load sweep (each point and the main
run ``--sweep-days`` long) is timed too: ``sweep.cores_used`` is the CPU seconds of the main run
and of every point over the wall time, and ``sweep.core_use`` that over the machine's cores
(DESIGN.md's goal: a 12-point sweep uses every core).

    python -m bench.sim --days 30 --sweep-points 12
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import simpy

from simulator import config as sim_config
from simulator import model

DEFAULT_CONFIG = "simulator/configs/year-10k.yaml"


def raw_simpy_events_per_s(events: int) -> tuple[float, float]:
    """Events a second of a trivial timeout loop: by wall clock, and by this process's CPU time."""
    env = simpy.Environment()

    def loop(env: simpy.Environment, n: int):
        for _ in range(n):
            yield env.timeout(1)

    env.process(loop(env, events - 2))  # the process's start and end are events too
    return _events_per_s(env)


def _events_per_s(env: simpy.Environment) -> tuple[float, float]:
    """Run ``env`` to the end with the collector paused: events per wall second and per CPU second."""
    started, cpu_started = time.perf_counter(), time.process_time()
    with model.gc_paused():
        env.run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    n = model.processed_events(env)
    return n / elapsed, n / max(cpu, 1e-9)


def raw_simpy_same_depth_events_per_s(events: int, depth: int, seed: int = 1) -> tuple[float, float]:
    """The same trivial timeout loop, run by ``depth`` processes at once so simpy's queue holds about
    as many events as the model's does (exponential delays, drawn beforehand): what simpy itself
    costs at that queue depth. An extra figure; the headline ratio stays against the plain loop."""
    env = simpy.Environment()
    depth = max(1, depth)
    per = max(1, (events - 2 * depth) // depth)
    gen = np.random.default_rng(seed)

    def loop(env: simpy.Environment, delays: list[float]):
        for d in delays:
            yield env.timeout(d)

    for _ in range(depth):
        env.process(loop(env, gen.exponential(1.0, per).tolist()))
    return _events_per_s(env)


def sweep(cfg, points: int, days: float, jobs: int | None = None) -> dict:
    """A capacity run with a ``points``-point sweep (multipliers 1, 1.5, 2, ...), timed."""
    cfg = sim_config.with_sweep(cfg, tuple(1 + 0.5 * i for i in range(points)), days)
    _main, _verdict, timing = model.capacity(cfg, days=days, jobs=jobs)
    figures = timing.as_dict()
    return {**figures, "days": days, "core_use": round(figures["cores_used"] / figures["cores"], 3)}


def run(config_path: str = DEFAULT_CONFIG, days: float = 30.0, repeat: int = 1, sweep_points: int = 0,
        sweep_days: float = 2.0) -> dict:
    cfg = sim_config.load(config_path)
    runs = []
    for _ in range(repeat):
        r = model.run(cfg, days=days)
        raw, raw_cpu = raw_simpy_events_per_s(r.events)
        depth = round(r.mean_pending_events)
        raw_depth, raw_depth_cpu = raw_simpy_same_depth_events_per_s(r.events, depth)
        eps, eps_cpu = r.events / r.loop_s, r.events / max(r.loop_cpu_s, 1e-9)
        runs.append({"events": r.events, "loop_s": round(r.loop_s, 3), "events_per_s": round(eps),
                     "raw_simpy_events_per_s": round(raw), "ratio": round(eps / raw, 3),
                     "orders_per_s": round(r.summary["orders"]["arrivals"] / r.loop_s),
                     "events_per_cpu_s": round(eps_cpu), "raw_simpy_events_per_cpu_s": round(raw_cpu),
                     "ratio_cpu": round(eps_cpu / raw_cpu, 3),
                     "mean_pending_events": depth, "raw_simpy_same_depth_events_per_s": round(raw_depth),
                     "ratio_same_depth": round(eps / raw_depth, 3),
                     "raw_simpy_same_depth_events_per_cpu_s": round(raw_depth_cpu),
                     "ratio_same_depth_cpu": round(eps_cpu / raw_depth_cpu, 3)})
    # With --repeat, each rate is its best run (the one least disturbed by other load), and each
    # ratio is best over best: a ratio picked from one run would reward a raw loop that got unlucky.
    best = {k: max(r[k] for r in runs) for k in runs[0] if k.endswith("_per_s") or k.endswith("_per_cpu_s")}
    pairs = {"ratio": ("events_per_s", "raw_simpy_events_per_s"),
             "ratio_cpu": ("events_per_cpu_s", "raw_simpy_events_per_cpu_s"),
             "ratio_same_depth": ("events_per_s", "raw_simpy_same_depth_events_per_s"),
             "ratio_same_depth_cpu": ("events_per_cpu_s", "raw_simpy_same_depth_events_per_cpu_s")}
    ratios = {k: round(best[a] / best[b], 3) for k, (a, b) in pairs.items()}
    return {"events_per_s": best["events_per_s"], "raw_simpy_events_per_s": best["raw_simpy_events_per_s"],
            "ratio": ratios["ratio"], "orders_per_s": best["orders_per_s"],
            "events_per_cpu_s": best["events_per_cpu_s"],
            "raw_simpy_events_per_cpu_s": best["raw_simpy_events_per_cpu_s"],
            "ratio_cpu": ratios["ratio_cpu"], "mean_pending_events": runs[0]["mean_pending_events"],
            "raw_simpy_same_depth_events_per_s": best["raw_simpy_same_depth_events_per_s"],
            "ratio_same_depth": ratios["ratio_same_depth"],
            "raw_simpy_same_depth_events_per_cpu_s": best["raw_simpy_same_depth_events_per_cpu_s"],
            "ratio_same_depth_cpu": ratios["ratio_same_depth_cpu"],
            "config": config_path, "days": days, "events": runs[0]["events"], "runs": runs,
            **({"sweep": sweep(cfg, sweep_points, sweep_days)} if sweep_points else {}),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--sweep-points", type=int, default=0)
    p.add_argument("--sweep-days", type=float, default=2.0)
    a = p.parse_args()
    print(json.dumps(run(a.config, a.days, a.repeat, a.sweep_points, a.sweep_days), indent=2))


if __name__ == "__main__":
    main()
