from __future__ import annotations

import simpy

from simulator import model
from simulator.chain import Chain, Mempool
from simulator.config import Blocks

from .conftest import small


def test_run_accounts_for_every_order():
    s = model.run(small()).summary
    o = s["orders"]
    assert o["arrivals"] == o["funded"] + sum(o["failed_funding"].values())
    assert o["funded"] == o["resolved"] + o["open_at_end"]
    assert o["resolved"] == sum(sum(m["outcomes"].values()) for m in s["modes"].values())
    assert o["resolved"] > 0


def test_run_replays_with_the_same_seed():
    cfg = small()
    assert model.run(cfg).summary == model.run(cfg).summary


def test_run_differs_with_another_seed():
    cfg = small()
    assert model.run(cfg, seed=1).summary["orders"] != model.run(cfg, seed=2).summary["orders"]


def test_run_fails_funding_when_htlc_slots_run_out():
    s = model.run(small(lightning={"channels": 1, "htlc_slots_per_direction": 20, "route_attempts": 1})).summary
    assert s["orders"]["failed_funding"]["htlc_slots"] > 0
    assert s["lightning"]["peak_channel_slots"] == 20


def test_run_fails_funding_when_channel_liquidity_runs_out():
    s = model.run(small(lightning={"channels": 1, "channel_capacity_sats": 2_000_000})).summary
    assert s["orders"]["failed_funding"]["channel_liquidity"] > 0
    assert s["lightning"]["peak_channel_sats"] <= s["lightning"]["usable_channel_sats"]


def test_run_refuses_hold_invoices_beyond_the_route_cltv_cap():
    s = model.run(small(windows={"ship_window_blocks": 2000})).summary
    assert s["lightning"]["cltv_blocks"] > 2016
    assert s["orders"]["failed_funding"]["cltv_budget"] == s["modes"]["ln_hold"]["arrivals"] > 0


def test_run_counts_the_cltv_budget_against_the_tightest_payer_told_of():
    """Windows whose hold (1138 blocks) LND payers route but LDK payers (cap 1008) refuse."""
    windows = {"ship_window_blocks": 1000, "speedup_factor": 1.0}
    lnd = model.run(small(windows=windows)).summary
    assert (lnd["lightning"]["cltv_cap_blocks"], lnd["lightning"]["cltv_cap_from"]) == (2016, "lnd")
    assert lnd["orders"]["failed_funding"].get("cltv_budget", 0) == 0
    both = model.run(small(windows=windows, lightning={"payer_impls": ["lnd", "ldk"]})).summary
    assert both["lightning"]["cltv_blocks"] == 1138
    assert (both["lightning"]["cltv_cap_blocks"], both["lightning"]["cltv_cap_from"]) == (1008, "ldk")
    assert both["orders"]["failed_funding"]["cltv_budget"] == both["modes"]["ln_hold"]["arrivals"] > 0


def test_run_moves_slow_disputes_into_custody():
    s = model.run(small(buyers={"dispute_probability": 0.5}, arbiters={"count": 1, "handling_mean_h": 24},
                        run={"duration_days": 8})).summary
    assert s["disputes"]["guardian_custody_moves"] > 0


def test_run_releases_by_default_when_the_ruling_window_ends():
    s = model.run(small(buyers={"dispute_probability": 0.5}, arbiters={"count": 1, "handling_mean_h": 48},
                        windows={"ruling_window_blocks": 12})).summary
    assert s["disputes"]["ruling_timeouts"] > 0


def test_run_refunds_when_sellers_never_ship():
    s = model.run(small(sellers={"never_ship_probability": 1.0})).summary
    assert all(m["outcomes"]["released"] == 0 for m in s["modes"].values())
    assert s["disputes"]["ship_timeouts"] == s["orders"]["resolved"] > 0


def test_run_samples_series_at_the_interval():
    r = model.run(small(run={"duration_days": 1, "sample_interval_s": 3600}))
    assert r.recorder.series["t_s"][:3] == [0, 3600, 7200]
    assert len(r.recorder.channel_slots[0]) == 64


def test_processed_events_counts_what_the_environment_ran():
    env = simpy.Environment()

    def ticker(env):
        for _ in range(10):
            yield env.timeout(1)

    env.process(ticker(env))
    env.run(until=5.5)
    # Initialize, 5 timeouts and run()'s own stop event were processed; the 6th timeout is still queued
    assert model.processed_events(env) == 7


def test_mempool_mines_first_in_first_out():
    import numpy as np

    cfg = Blocks(background_fill_min_fraction=0.9999, background_fill_max_fraction=0.9999)
    chain = Chain.draw(cfg, 86_400, np.random.default_rng(1))
    pool = Mempool(chain, 1.0)
    space = chain.space_vb[1]
    first = pool.submit(space * 0.6, 0, "fund")
    second = pool.submit(space * 0.6, 0, "fund")
    assert first == 1
    assert second == 2
    pool.mine(1)
    assert pool.backlog_vb == space * 1.2 - space
