"""Time series at fixed intervals, and the summary of a run: counters, distributions, peaks.

The recorder is the only place results go; nothing in the simulator prints. Series are
sampled, not logged per order, so a year of 10,000 orders a day stays a few MB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from simulator.market import FAILURES, HIST_MAX_BLOCKS, MODE_NAMES, OUTCOMES, Market

SERIES = ("t_s", "height", "locked_ln_sats", "locked_onchain_sats", "locked_custodial_sats", "custody_sats",
          "held_htlcs", "max_channel_slots", "awaiting_ship", "in_transit", "awaiting_release", "in_dispute",
          "arbiter_queue", "mempool_backlog_vb", "arrivals", "resolved", "outbound_sats", "hot_wallet_sats")


@dataclass
class Recorder:
    interval_s: float
    series: dict[str, list] = field(default_factory=lambda: {k: [] for k in SERIES})
    channel_slots: list[list[int]] = field(default_factory=list)   # per sample, HTLC slots in use per channel

    def sample(self, market: Market) -> None:
        s = self.series
        locked = market.locked_sats
        values = (market.env.now, market.height, locked[0], locked[1], locked[2], market.custody_sats,
                  market.held_htlcs, max(market.slots), market.awaiting_ship, market.in_transit,
                  market.awaiting_release, market.in_dispute, len(market.disputes.items),
                  round(market.mempool.backlog_vb), market.arrivals, market.resolved, market.outbound_sats,
                  market.hot_wallet_sats)
        for k, v in zip(SERIES, values):
            s[k].append(v)
        self.channel_slots.append(list(market.slots))


def recorder(env: simpy.Environment, market: Market, rec: Recorder):
    """Samples every resource at a fixed interval."""
    while True:
        rec.sample(market)
        yield env.timeout(rec.interval_s)


def percentile(hist: list[int], q: float) -> int | None:
    total = sum(hist)
    if not total:
        return None
    target, seen = q * total, 0
    for blocks, n in enumerate(hist):
        seen += n
        if seen >= target:
            return blocks
    return HIST_MAX_BLOCKS


def _mean(hist: list[int]) -> float | None:
    total = sum(hist)
    return round(sum(b * n for b, n in enumerate(hist)) / total, 2) if total else None


def summarize(market: Market, rec: Recorder, duration_s: float) -> dict:
    """The run's figures: plain JSON types, rounded so a seeded run compares equal across machines."""
    m, days = market, duration_s / 86_400
    funded_disputes = sum(m.disputes_opened.values())
    per_mode = {}
    for i, name in enumerate(MODE_NAMES):
        hist = m.durations[i]
        per_mode[name] = {
            "arrivals": m.by_mode_arrivals[i],
            "outcomes": dict(zip(OUTCOMES, m.outcomes[i])),
            "escrow_blocks": {"mean": _mean(hist), "p50": percentile(hist, 0.5), "p90": percentile(hist, 0.9),
                              "p99": percentile(hist, 0.99), "max": max((b for b, n in enumerate(hist) if n), default=None)},
        }
    s = rec.series
    return {
        "duration_days": round(days, 3),
        "blocks": m.height,
        "orders": {"arrivals": m.arrivals, "funded": m.funded, "resolved": m.resolved,
                   "open_at_end": m.funded - m.resolved,
                   "failed_funding": dict(m.failures),
                   "success_rate": round(sum(o[0] + o[2] for o in m.outcomes) / max(1, m.resolved), 4)},
        "modes": per_mode,
        "disputes": {"opened": dict(m.disputes_opened), "rate": round(funded_disputes / max(1, m.funded), 4),
                     "ruling_timeouts": m.ruling_timeouts, "guardian_custody_moves": m.custody_moves,
                     "ship_timeouts": m.ship_timeouts, "peak_arbiter_queue": max(s["arbiter_queue"], default=0)},
        "lightning": {"cltv_blocks": m.cltv_blocks, "cltv_cap_blocks": m.cltv_cap,
                      "cltv_cap_from": m.cltv_cap_from,
                      "guardian_after_blocks": m.guard_blocks,
                      "peak_held_htlcs": m.peak["held_htlcs"], "peak_channel_slots": m.peak["channel_slots"],
                      "slot_limit": m.slot_limit, "channels": m.channels,
                      "peak_channel_sats": m.peak["channel_sats"], "usable_channel_sats": m.usable_sats,
                      "peak_ln_locked_sats": m.peak["ln_locked_sats"],
                      "payouts": m.payouts, "payouts_over_fee_limit": m.payouts_over_fee_limit,
                      "routing_fees_sats": round(m.routing_fees_sats),
                      "outbound_short": m.outbound_short, "min_outbound_sats": min(s["outbound_sats"], default=0)},
        "onchain": {"txs": m.mempool.txs, "by_kind": dict(m.mempool.by_kind), "fees_sats": round(m.mempool.fees_sats),
                    "peak_backlog_vb": round(m.mempool.peak_backlog_vb),
                    "mean_block_space_vb": round(m.chain.mean_space_vb),
                    "demand_vb_per_block": round(m.mempool.queued_vb / max(1, m.height), 1)},
        "custodial": {"hot_wallet_short": m.hot_wallet_short, "min_hot_wallet_sats": min(s["hot_wallet_sats"], default=0),
                      "swept_to_cold_sats": m.cold_wallet_sats},
        "peaks": {"locked_sats": max((a + b + c for a, b, c in zip(s["locked_ln_sats"], s["locked_onchain_sats"],
                                                                   s["locked_custodial_sats"])), default=0),
                  "awaiting_ship": max(s["awaiting_ship"], default=0), "in_transit": max(s["in_transit"], default=0),
                  "awaiting_release": max(s["awaiting_release"], default=0)},
        "commission_sats": m.commission_sats,
        "first_failure_day": {k: (round(v / 86_400, 2) if v is not None else None)
                              for k, v in m.first_failure_s.items()},
        "failure_kinds": list(FAILURES),
    }
