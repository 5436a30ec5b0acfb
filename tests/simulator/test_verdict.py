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
    _main, v, _timing = model.capacity(cfg)
    assert [row["multiplier"] for row in v["sweep"]] == [2.0]


def test_the_sweeps_points_run_in_other_processes_and_say_what_serial_runs_say():
    """Each point is an independent seeded run: done in worker processes beside the main run, it
    must give what the same run gives here, in the order the config lists the points."""
    cfg = small(verdict={"sweep_multipliers": [3.0, 1.0, 3.0], "sweep_days": 1})
    _main, v, timing = model.capacity(cfg, jobs=2)
    assert v["sweep"] == [verdict.sweep_row(model.run(cfg, days=1, multiplier=m).summary) for m in (3.0, 1.0, 3.0)]
    assert [p["multiplier"] for p in timing.points] == [3.0, 1.0, 3.0]
    figures = timing.as_dict()
    assert (figures["jobs"], figures["sweep_points"]) == (2, 3)
    assert figures["cpu_s"] > sum(p["cpu_s"] for p in timing.points) > 0  # the main run's CPU too
    assert figures["cores_used"] == round(timing.cpu_s / timing.wall_s, 2)


def test_a_run_without_a_sweep_starts_no_process():
    _main, v, timing = model.capacity(small())
    assert v["sweep"] == [] and timing.points == [] and timing.jobs == 0
