"""The actors, as simpy processes in the style of simpy's bank_renege and machine_shop examples.

``buyer`` draws a day of arrivals at a time (a non-homogeneous Poisson process: a Poisson
count for the day, times from the hourly profile) together with what the seller, the
courier and the buyer will do for each order, and has the market plan the day: each
order's arrival and each later stage is then one event.
Drawing in bulk with numpy keeps the event loop cheap; every draw comes from a generator
seeded by the ``random.Random`` the run passes in, so a seed replays a run exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import simpy

from simulator.config import MODES, SimConfig
from simulator.market import BUCKET_S, CONFIRM, DISPUTE, RULINGS, Market

DAY_S = 86_400.0
# A buyer who confirms does so a while after delivery; the spread of that delay (log-normal sigma).
CONFIRM_DELAY_SIGMA = 0.8
MIN_PRICE_SATS, MAX_PRICE_SATS = 1_000, 10_000_000   # the app's min_price_sats / max_price_sats


def numpy_generator(rng: random.Random) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(rng.getrandbits(128)))


ROW_FIELDS = ("mode", "price", "channel", "ship", "transit", "act", "act_delay", "ruling", "handling", "release_vb")


@dataclass(frozen=True)
class Draws:
    """Everything decided about one day's orders, as numpy arrays (see ``ROW_FIELDS``)."""

    arrays: dict

    def rows_of(self, orders: np.ndarray) -> list[tuple]:
        """The rows of ``orders`` as plain Python values, in ``ROW_FIELDS`` order (the per-order path)."""
        return list(zip(*(self.arrays[k][orders].tolist() for k in ROW_FIELDS)))

    @property
    def arrive_s(self) -> list[float]:
        return self.arrays["arrive"].tolist()

    @property
    def rows(self) -> list[tuple]:
        return self.rows_of(np.arange(len(self.arrays["arrive"])))


def draw_day(cfg: SimConfig, day: int, multiplier: float, gen: np.random.Generator) -> Draws:
    b, s, c = cfg.buyers, cfg.sellers, cfg.couriers
    n = int(gen.poisson(b.arrivals_per_day * multiplier))
    profile = np.asarray(b.hourly_profile, dtype=float)
    hours = gen.choice(24, size=n, p=profile / profile.sum())
    arrive = np.sort(day * DAY_S + (hours + gen.random(n)) * 3600.0)
    mix = np.asarray([b.escrow_mode_mix.get(m, 0.0) for m in MODES], dtype=float)
    mode = gen.choice(3, size=n, p=mix / mix.sum())
    items = 1 + gen.poisson(b.basket_items_mean - 1, n)
    price = np.clip(np.rint(items * gen.lognormal(math.log(b.item_price_median_sats), b.item_price_sigma, n)),
                    MIN_PRICE_SATS, MAX_PRICE_SATS).astype(np.int64)
    channel = gen.integers(0, cfg.lightning.channels, n)
    ship = gen.lognormal(math.log(s.ship_delay_median_h * 3600), s.ship_delay_sigma, n)
    ship[gen.random(n) < s.never_ship_probability] = math.inf
    transit = gen.lognormal(math.log(c.transit_median_h * 3600), c.transit_sigma, n)
    transit[gen.random(n) < c.loss_probability] = math.inf
    u = gen.random(n)
    act = np.where(u < b.dispute_probability, DISPUTE, np.where(u < b.dispute_probability + b.confirm_probability,
                                                                CONFIRM, 0))
    w = cfg.windows
    window_s = min(w.dispute_window_s, w.dispute_window_blocks * cfg.blocks.interval_mean_s)
    act_delay = np.where(act == DISPUTE, gen.random(n) * window_s,
                         gen.lognormal(math.log(b.confirm_delay_median_h * 3600), CONFIRM_DELAY_SIGMA, n))
    rmix = np.asarray([cfg.disputes.ruling_mix.get(r, 0.0) for r in RULINGS], dtype=float)
    ruling = gen.choice(3, size=n, p=rmix / rmix.sum()) if rmix.sum() > 0 else np.zeros(n, dtype=np.int64)
    handling = gen.exponential(cfg.arbiters.handling_mean_h * 3600, n)
    release_vb = gen.uniform(cfg.blocks.release_tx_min_vb, cfg.blocks.release_tx_max_vb, n)
    return Draws({"arrive": arrive, "mode": mode, "price": price, "channel": channel, "ship": ship,
                  "transit": transit, "act": act, "act_delay": act_delay, "ruling": ruling, "handling": handling,
                  "release_vb": release_vb})


def buyer(env: simpy.Environment, market: Market, cfg: SimConfig, days: int, multiplier: float,
          gen: np.random.Generator):
    """Buyers arrive, pick a basket and an escrow mode, and fund the escrow.

    Each day is drawn and planned a day ahead: every order's arrival and later stages land
    in calendar buckets that have not opened yet, and become one event each when they do."""
    market.plan(draw_day(cfg, 0, multiplier, gen))
    for day in range(days):
        if day + 1 < days:
            market.plan(draw_day(cfg, day + 1, multiplier, gen))
        yield env.timeout((day + 1) * DAY_S - env._now)


def miner(env: simpy.Environment, market: Market):
    """Blocks arrive as a Poisson process (times drawn up front in ``Chain``).

    Each block also notes how many events wait in simpy's queue: sampled at Poisson times,
    their mean is the time average (``bench sim`` builds a raw baseline of that depth)."""
    mempool, queue = market.mempool, env._queue
    for height, t in enumerate(market.times, start=1):
        yield env.timeout(t - env._now)
        market.height = height
        market.pending_events_sum += len(queue)
        mempool.mine(height)


def arbiter(env: simpy.Environment, market: Market):
    """Takes the oldest open dispute, spends its handling time, rules."""
    while True:
        order = yield market.disputes.get()
        if order[12]:  # the ruling window ended while the case waited
            continue
        yield env.timeout(order[8])
        market.rule(order)


def calendar(env: simpy.Environment, market: Market):
    """Opens each calendar bucket when its time comes (see ``market.BUCKET_S``)."""
    k = 0
    while True:
        yield env.timeout(k * BUCKET_S - env._now)
        market.open_bucket(k)
        k += 1


def treasurer(env: simpy.Environment, market: Market, cfg: SimConfig):
    """The operator's daily chores: rebalance outbound liquidity, sweep the hot wallet to cold storage."""
    ln, cu = cfg.lightning, cfg.custodial
    while True:
        yield env.timeout(DAY_S)
        gap = ln.outbound_liquidity_sats - market.outbound_sats
        market.outbound_sats += min(gap, ln.rebalance_sats_per_day) if gap > 0 else 0
        if market.hot_wallet_sats > cu.hot_wallet_max_sats:
            market.cold_wallet_sats += market.hot_wallet_sats - cu.hot_wallet_max_sats
            market.hot_wallet_sats = cu.hot_wallet_max_sats
        elif market.hot_wallet_sats < 0:   # refilled from cold storage
            market.cold_wallet_sats += market.hot_wallet_sats
            market.hot_wallet_sats = 0


def start(env: simpy.Environment, market: Market, cfg: SimConfig, days: int, multiplier: float,
          rng: random.Random) -> None:
    env.process(buyer(env, market, cfg, days, multiplier, numpy_generator(rng)))
    env.process(miner(env, market))
    env.process(calendar(env, market))
    env.process(treasurer(env, market, cfg))
    for _ in range(cfg.arbiters.count):
        env.process(arbiter(env, market))


__all__ = ["buyer", "miner", "arbiter", "treasurer", "start", "draw_day"]
