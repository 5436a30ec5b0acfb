"""A seeded model run against the checked-in golden summary.

Regenerate deliberately, after a change that should move the figures:
    escrowlab simulate --config tests/simulator/golden/small.yaml \\
        --update-golden tests/simulator/golden/small.summary.json
"""

from __future__ import annotations

from simulator import golden, model

from .conftest import HERE

GOLDEN = HERE / "golden" / "small.summary.json"


def test_run_matches_golden_summary(golden_config):
    summary = model.run(golden_config).summary
    difference = golden.diff(GOLDEN, summary)
    assert not difference, "the seeded run moved away from the golden summary:\n" + difference


def test_diff_shows_a_changed_figure(golden_config, tmp_path):
    summary = model.run(golden_config, days=1).summary
    path = tmp_path / "g.json"
    golden.write(path, summary)
    assert golden.diff(path, summary) == ""
    summary["orders"]["arrivals"] += 1
    assert '-    "arrivals": ' in golden.diff(path, summary)
