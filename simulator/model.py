"""Model mode: one seeded simpy run of the marketplace, then its summary.

``run`` builds the environment, draws the chain, starts the actors and runs to the
horizon. It counts the simpy events the model processed from the environment itself
(event ids issued, less those still queued), which is what ``bench sim`` reports.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field

import simpy

from simulator import agents
from simulator.chain import Chain
from simulator.config import SimConfig
from simulator import verdict as verdict_mod
from simulator.market import MODE_NAMES, Market
from simulator.recorder import Recorder, recorder, summarize

DAY_S = 86_400.0


@dataclass
class ModelRun:
    summary: dict
    recorder: Recorder
    market: Market
    events: int
    wall_s: float        # the whole run: drawing the chain, the event loop, the summary
    loop_s: float        # the event loop alone (the actors' own draws included)
    loop_cpu_s: float    # the same, in CPU time of this process (robust on a shared machine)
    mean_pending_events: float   # events waiting in simpy's queue, on average over the run


def processed_events(env: simpy.Environment) -> int:
    """Events the environment has popped and processed: ids issued minus those still queued."""
    issued = next(env._eid)
    return issued - len(env._queue)


@contextmanager
def gc_paused():
    """No cyclic GC during the event loop: every pending stage is a live container, and full
    collections would walk them all; reference counting still frees each event."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run(cfg: SimConfig, days: float | None = None, multiplier: float | None = None,
        seed: int | None = None) -> ModelRun:
    days = cfg.run.duration_days if days is None else days
    multiplier = cfg.run.load_multiplier if multiplier is None else multiplier
    rng = random.Random(cfg.run.seed if seed is None else seed)
    horizon_s = days * DAY_S
    started = time.perf_counter()
    env = simpy.Environment()
    # the chain runs past the horizon so every window that opens before it can close
    w = cfg.windows
    tail_s = (w.ruling_window_blocks + w.ship_window_blocks + w.delivery_window_blocks + w.dispute_window_blocks) \
        * cfg.blocks.interval_mean_s * 2
    chain = Chain.draw(cfg.blocks, horizon_s + tail_s, agents.numpy_generator(rng))
    market = Market(env, cfg, chain)
    rec = Recorder(cfg.run.sample_interval_s)
    agents.start(env, market, cfg, math.ceil(days), multiplier, rng)
    env.process(recorder(env, market, rec))
    loop_started, cpu_started = time.perf_counter(), time.process_time()
    with gc_paused():
        env.run(until=horizon_s)
    loop_s = time.perf_counter() - loop_started
    loop_cpu_s = time.process_time() - cpu_started
    rec.sample(market)
    events = processed_events(env) - market.skipped   # stages of orders that never funded do not count
    wall = time.perf_counter() - started
    summary = summarize(market, rec, horizon_s)
    summary["load_multiplier"] = multiplier
    summary["seed"] = cfg.run.seed if seed is None else seed
    summary["_histograms"] = {name: _trim(market.durations[i]) for i, name in enumerate(MODE_NAMES)}
    pending = market.pending_events_sum / max(1, market.height)
    return ModelRun(summary, rec, market, events, wall, loop_s, loop_cpu_s, pending)


def _trim(hist: list[int]) -> list[int]:
    last = max((i for i, n in enumerate(hist) if n), default=-1)
    return hist[:last + 1]


@dataclass
class Timing:
    """How a capacity run used the machine: its wall time, and the CPU time of the main run and
    of every sweep point (each in its own process); ``cores_used`` is their sum over the wall."""

    jobs: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    points: list[dict] = field(default_factory=list)  # per sweep point: multiplier, wall_s, cpu_s

    def as_dict(self) -> dict:
        return {"jobs": self.jobs, "sweep_points": len(self.points), "wall_s": round(self.wall_s, 2),
                "cpu_s": round(self.cpu_s, 2), "cores_used": round(self.cpu_s / max(self.wall_s, 1e-9), 2),
                "cores": os.cpu_count() or 1}


def sweep_point(cfg: SimConfig, days: float, multiplier: float) -> tuple[dict, float, float]:
    """One point of the load sweep, run in a worker process: its sweep row, wall and CPU seconds
    (only the row crosses back, not the run's series)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    row = verdict_mod.sweep_row(run(cfg, days=days, multiplier=multiplier).summary)
    return row, time.perf_counter() - started, time.process_time() - cpu_started


def capacity(cfg: SimConfig, progress=lambda _m: None, days: float | None = None,
             multiplier: float | None = None, jobs: int | None = None) -> tuple[ModelRun, dict, Timing]:
    """The main run, the optional load sweep, and the verdict. The sweep's points are independent
    runs: they go to ``jobs`` worker processes (default: one per core) while the main run goes
    on in this one, so a sweep keeps every core busy."""
    points = cfg.verdict.sweep_multipliers
    timing = Timing(jobs=max(1, jobs or os.cpu_count() or 1) if points else 0)
    started, cpu_started = time.perf_counter(), time.process_time()
    # forkserver, not fork: this process may have threads (a progress display)
    pool = (ProcessPoolExecutor(min(timing.jobs, len(points)), multiprocessing.get_context("forkserver"))
            if points else None)
    try:
        futures = {pool.submit(sweep_point, cfg, cfg.verdict.sweep_days, m): i for i, m in enumerate(points)} \
            if pool else {}
        main = run(cfg, days=days, multiplier=multiplier)
        progress(f"{main.summary['orders']['arrivals']:,} orders, {main.events:,} events in {main.wall_s:.1f} s")
        sweep: list[dict] = [{}] * len(points)  # in the config's order, whichever point ends first
        timing.points = [{}] * len(points)
        for done, future in enumerate(as_completed(futures), 1):
            i = futures[future]
            sweep[i], wall_s, cpu_s = future.result()
            timing.points[i] = {"multiplier": points[i], "wall_s": round(wall_s, 2), "cpu_s": round(cpu_s, 2)}
            progress(f"sweep x{points[i]}: failed funding {sweep[i]['failed_funding']} "
                     f"({done} of {len(points)} points)")
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    timing.wall_s = time.perf_counter() - started
    timing.cpu_s = time.process_time() - cpu_started + sum(p["cpu_s"] for p in timing.points)
    return main, verdict_mod.verdict(main.summary, cfg, sweep), timing
