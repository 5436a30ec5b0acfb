"""`escrowlab scenario` as CI uses it: its exit code and its JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def scenario(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "escrowlab", "scenario", "run", *args, "--json", "--seed", "3"],
                          capture_output=True, text=True, timeout=600)


def test_run_passing_scenario_exits_zero_with_the_summary():
    proc = scenario("buyer_confirms_early")
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (summary["scenarios"], summary["passed"], summary["failed"]) == (1, 1, 0)
    assert summary["schema"] == "escrowlab.scenario-run/1" and "I1" in summary["invariants"]


def test_run_broken_invariant_exits_nonzero_and_names_it():
    proc = scenario("buyer_confirms_early", "--planted-bug", "fee_from_escrow")
    summary = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert summary["failed"] == 1
    assert {v["invariant"] for v in summary["results"][0]["violations"]} >= {"I13"}


def test_run_unknown_scenario_is_one_clear_error():
    proc = subprocess.run([sys.executable, "-m", "escrowlab", "scenario", "run", "no_such_story"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no scenario named no_such_story" in proc.stderr


def test_run_with_jobs_runs_a_second_lane_and_reports_in_catalogue_order():
    proc = scenario("buyer_confirms_early", "unpaid_order_expires", "--jobs", "2")
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["name"] for r in summary["results"]] == ["buyer_confirms_early", "unpaid_order_expires"]
    assert "lane 2: its hub cluster is up" in proc.stderr
    assert (Path(summary["run_dir"]) / "lane-2" / "bitcoind").is_dir()
