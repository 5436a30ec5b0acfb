"""`escrowlab load` as CI uses it: real cluster, real app, Locust in its own processes,
and the exit code a broken budget gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import processes_under

pytestmark = pytest.mark.cluster


def load(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "escrowlab", "load", "--headless", "--json", *args],
                          capture_output=True, text=True, timeout=600)


def test_load_broken_budget_exits_nonzero_with_reports(tmp_path):
    budgets = tmp_path / "impossible.yaml"
    budgets.write_text("totals: {min_escrows_settled_per_s: 100000}\nendpoints: {'GET /listings': {max_p50_ms: 0}}\n")
    proc = load("--profile", "steady", "--users", "3", "--duration", "25s", "--budgets", str(budgets))
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    breaches = summary["budgets"]["breaches"]
    assert summary["budgets"]["passed"] is False
    assert any(b.startswith("totals: escrows_settled_per_s is ") for b in breaches), breaches
    assert any(b.startswith("GET /listings: p50_ms is ") for b in breaches), breaches
    assert "budget broken: totals: escrows_settled_per_s" in proc.stderr
    run_dir = Path(summary["run_dir"])
    for name in ("locust.html", "locust_stats.csv", "locust_stats_history.csv", "summary.json", "load.png"):
        assert (run_dir / name).is_file(), name
    created = summary["endpoints"]["POST /orders"]
    assert created["requests"] > 0
    # the budgets broke, but the escrows did not: every order the run made ended and passed the oracle
    check = summary["oracle"]
    assert (check["passed"], check["violations"], check["still_open"]) == (True, [], 0)
    assert check["orders_checked"] == created["requests"] - created["failures"]
    assert {"app", "bitcoind", "hub"} <= set(summary["memory"]) and (run_dir / "memory.png").is_file()
    assert processes_under(run_dir) == []


def test_load_bad_profile_is_one_clear_error(tmp_path):
    profile = tmp_path / "flat.yaml"
    profile.write_text("name: flat\nstages: [{until: 0.5, users: 1}]\n")
    proc = load("--profile", str(profile))
    assert proc.returncode == 2
    assert f"{profile}: the last stage must end the run (until: 1.0); it ends at 0.5" in proc.stderr
