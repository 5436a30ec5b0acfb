"""The capacity verdict: which resource binds first, at what load, and when under growth.

Each resource's utilisation at the simulated load is its peak use over its limit. Every
use below scales linearly with the order rate (Little's law for held HTLCs, locked sats
and arbiter work; rates for block space and payouts), so a resource binds at load
multiplier ``1 / utilisation``; the CLTV budget does not depend on load at all. With
``growth_per_year`` the multiplier becomes a date. An optional sweep re-runs the model
at higher multipliers and records the day each kind of failure first appeared, which
checks the linear estimate against the model's own queues.
"""

from __future__ import annotations

import math

DAY_S = 86_400.0


def utilisation(summary: dict, cfg) -> dict[str, dict]:
    ln, oc, cu = summary["lightning"], summary["onchain"], summary["custodial"]
    days = max(summary["duration_days"], 1e-9)
    disputes = sum(summary["disputes"]["opened"].values())
    arbiter_load_h_per_day = disputes / days * cfg.arbiters.handling_mean_h
    rows = {
        # Pool views: the route tries several channels, so the hub runs out when all of them are
        # full, not when the busiest one is (its peak is in the summary and the report).
        "htlc_slots": (ln["peak_held_htlcs"], ln["slot_limit"] * ln["channels"],
                       "held HTLCs vs 483 per direction on every incoming channel"),
        "channel_liquidity": (ln["peak_ln_locked_sats"], ln["usable_channel_sats"] * ln["channels"],
                              "sats held in HTLCs vs the incoming channels' capacity less reserve"),
        "cltv_budget": (ln["cltv_blocks"], ln["cltv_cap_blocks"],
                        "hold invoice CLTV vs the tightest payer's route cap (independent of load)"),
        "block_space": (oc["demand_vb_per_block"], oc["mean_block_space_vb"],
                        "our vbytes per block vs the space other users leave"),
        "arbiters": (arbiter_load_h_per_day, cfg.arbiters.count * 24.0,
                     "arbiter hours needed per day vs arbiter hours available"),
        "outbound_liquidity": (max(0, cfg.lightning.outbound_liquidity_sats - ln["min_outbound_sats"]),
                               cfg.lightning.outbound_liquidity_sats,
                               "deepest draw on the hub's outbound liquidity vs what it holds"),
        "hot_wallet": (max(0, cfg.custodial.hot_wallet_initial_sats - cu["min_hot_wallet_sats"]),
                       cfg.custodial.hot_wallet_initial_sats, "deepest draw on the hot wallet vs its float"),
    }
    out = {}
    for name, (use, limit, what) in rows.items():
        u = use / limit if limit else math.inf
        out[name] = {"use": round(use, 2), "limit": limit, "utilisation": round(u, 4), "what": what,
                     "binds_at_multiplier": None if name == "cltv_budget" or u == 0
                     else round(1 / u, 2)}
    out["cltv_budget"]["binds_at_multiplier"] = 0.0 if out["cltv_budget"]["utilisation"] > 1 else None
    return out


def verdict(summary: dict, cfg, sweep: list[dict] | None = None) -> dict:
    util = utilisation(summary, cfg)
    load = summary["load_multiplier"]
    candidates = {k: v["binds_at_multiplier"] * load for k, v in util.items() if v["binds_at_multiplier"] is not None}
    first = min(candidates, key=candidates.get) if candidates else None
    at = candidates.get(first)
    growth = cfg.verdict.growth_per_year
    years = None if at is None else (0.0 if at <= 1 else round(math.log(at) / math.log(growth), 2))
    observed = {k: v for k, v in summary["first_failure_day"].items() if v is not None}
    text = ("no resource binds at any load" if first is None else
            f"{first} binds first, at {at:.2f}x the configured load"
            + ("" if years is None else f" (about {years} years at {growth}x a year)" if years else " (already)"))
    return {"binds_first": first, "at_multiplier": None if at is None else round(at, 2), "years_at_growth": years,
            "growth_per_year": growth, "text": text, "resources": util,
            "observed_failures_day": observed, "sweep": sweep or []}


def sweep_row(summary: dict) -> dict:
    return {"multiplier": summary["load_multiplier"], "days": summary["duration_days"],
            "orders": summary["orders"]["arrivals"],
            "failed_funding": summary["orders"]["failed_funding"],
            "first_failure_day": summary["first_failure_day"],
            "peak_channel_slots": summary["lightning"]["peak_channel_slots"],
            "peak_channel_sats": summary["lightning"]["peak_channel_sats"],
            "peak_backlog_vb": summary["onchain"]["peak_backlog_vb"],
            "peak_arbiter_queue": summary["disputes"]["peak_arbiter_queue"],
            "success_rate": summary["orders"]["success_rate"]}
