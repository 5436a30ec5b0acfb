"""Model mode: one seeded simpy run of the marketplace, then its summary.

``run`` builds the environment, draws the chain, starts the actors and runs to the
horizon. It counts the simpy events the model processed from the environment itself
(event ids issued, less those still queued), which is what ``bench sim`` reports.
"""

from __future__ import annotations

import gc
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass

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


def capacity(cfg: SimConfig, progress=lambda _m: None, days: float | None = None,
             multiplier: float | None = None) -> tuple[ModelRun, dict]:
    """The main run, the optional load sweep, and the verdict."""
    main = run(cfg, days=days, multiplier=multiplier)
    progress(f"{main.summary['orders']['arrivals']:,} orders, {main.events:,} events in {main.wall_s:.1f} s")
    sweep = []
    for m in cfg.verdict.sweep_multipliers:
        r = run(cfg, days=cfg.verdict.sweep_days, multiplier=m)
        sweep.append(verdict_mod.sweep_row(r.summary))
        progress(f"sweep x{m}: failed funding {r.summary['orders']['failed_funding']}")
    return main, verdict_mod.verdict(main.summary, cfg, sweep)
