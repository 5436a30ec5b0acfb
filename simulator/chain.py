"""The block chain the model sees: Poisson block times and the block space left for us.

Block times are drawn up front (they do not depend on the marketplace), so any window
measured in blocks ("height + 36") maps to a time with one list lookup. The marketplace's
own transactions queue first-in first-out for the space other users leave in each block
(a fluid queue: a transaction may straddle two blocks); the fee rate it pays rises with
the backlog. ``Mempool`` keeps only two totals, so no per-transaction object exists.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from simulator.config import Blocks

WU_PER_VB = 4


@dataclass(frozen=True)
class Chain:
    times_s: list[float]          # times_s[i]: when block height i + 1 is mined (height 0 at t = 0)
    space_vb: list[float]         # space_vb[h]: vbytes block h leaves for us (index 0 unused)
    cum_space_vb: list[float]     # cum_space_vb[h]: sum of space_vb[1..h]
    mean_space_vb: float

    @classmethod
    def draw(cls, cfg: Blocks, horizon_s: float, gen: np.random.Generator) -> "Chain":
        n = int(horizon_s / cfg.interval_mean_s * 1.2) + 5_000
        times = np.cumsum(gen.exponential(cfg.interval_mean_s, n))
        while times[-1] < horizon_s:  # a slow stretch of blocks: draw more
            times = np.concatenate([times, times[-1] + np.cumsum(gen.exponential(cfg.interval_mean_s, n))])
        block_vb = cfg.weight_limit_wu / WU_PER_VB
        fill = gen.uniform(cfg.background_fill_min_fraction, cfg.background_fill_max_fraction, len(times))
        space = np.concatenate([[0.0], block_vb * (1 - fill)])
        return cls(times.tolist(), space.tolist(), np.cumsum(space).tolist(), float(space[1:].mean()))


@dataclass
class Mempool:
    """Our transactions waiting for block space: bytes ever queued, bytes ever mined."""

    chain: Chain
    base_fee_sat_vb: float
    queued_vb: float = 0.0
    mined_vb: float = 0.0
    fees_sats: float = 0.0
    txs: int = 0
    peak_backlog_vb: float = 0.0
    by_kind: dict = field(default_factory=lambda: {"fund": 0, "release": 0, "withdrawal": 0})

    def submit(self, vb: float, height: int, kind: str) -> int:
        """Queue a transaction at the current ``height``; returns the height that mines it."""
        backlog = self.queued_vb - self.mined_vb
        self.fees_sats += vb * self.base_fee_sat_vb * (1 + backlog / self.chain.mean_space_vb)
        self.queued_vb += vb
        self.txs += 1
        self.by_kind[kind] += 1
        if backlog + vb > self.peak_backlog_vb:
            self.peak_backlog_vb = backlog + vb
        cum = self.chain.cum_space_vb
        return bisect_left(cum, self.queued_vb - self.mined_vb + cum[height], height + 1)

    def mine(self, height: int) -> None:
        mined = self.mined_vb + self.chain.space_vb[height]
        self.mined_vb = mined if mined < self.queued_vb else self.queued_vb

    @property
    def backlog_vb(self) -> float:
        return self.queued_vb - self.mined_vb
