from __future__ import annotations

from simulator import model, verdict

from .conftest import small


def test_verdict_names_the_slot_limit_when_channels_are_few():
    cfg = small(lightning={"channels": 2, "htlc_slots_per_direction": 100, "channel_capacity_sats": 100_000_000_000},
                arbiters={"count": 50})
    v = verdict.verdict(model.run(cfg).summary, cfg)
    assert v["binds_first"] == "htlc_slots"
    assert v["at_multiplier"] <= 1.0


def test_verdict_names_block_space_when_blocks_are_full():
    cfg = small(blocks={"background_fill_min_fraction": 0.9995, "background_fill_max_fraction": 0.9999},
                arbiters={"count": 50})
    v = verdict.verdict(model.run(cfg).summary, cfg)
    assert v["binds_first"] == "block_space"


def test_verdict_dates_the_binding_under_growth():
    cfg = small(arbiters={"count": 50}, verdict={"growth_per_year": 2.0})
    v = verdict.verdict(model.run(cfg).summary, cfg)
    m = v["at_multiplier"]
    assert m > 1
    assert abs(2 ** v["years_at_growth"] - m) / m < 0.05


def test_capacity_runs_the_sweep():
    cfg = small(verdict={"sweep_multipliers": [2.0], "sweep_days": 1})
    _main, v = model.capacity(cfg)
    assert [row["multiplier"] for row in v["sweep"]] == [2.0]
