from __future__ import annotations

from bench import sim


def test_run_reports_the_four_figures():
    result = sim.run("tests/simulator/golden/small.yaml", days=0.5)
    assert set(result) >= {"events_per_s", "raw_simpy_events_per_s", "ratio", "orders_per_s"}
    assert result["events"] > 0
    assert result["ratio"] == round(result["events_per_s"] / result["raw_simpy_events_per_s"], 3)


def test_run_reports_a_baseline_at_the_models_queue_depth():
    result = sim.run("tests/simulator/golden/small.yaml", days=0.5)
    assert result["mean_pending_events"] > 1
    assert result["ratio_same_depth"] == round(result["events_per_s"] / result["raw_simpy_same_depth_events_per_s"], 3)
