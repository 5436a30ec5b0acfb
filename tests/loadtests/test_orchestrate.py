"""`escrowlab load` as CI uses it: real cluster, real app, Locust in its own processes,
and the exit code a broken budget gives."""

from __future__ import annotations

import json
import re
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
    # Locust's own flags, as a Locust user types them
    proc = load("--profile", "steady", "-u", "3", "-t", "25s", "-r", "5", "--budgets", str(budgets),
                "--html", str(tmp_path / "out.html"), "--csv", str(tmp_path / "csv" / "run"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["users"], summary["fixed_users"], summary["spawn_rate"]) == (3, 4, 5.0)
    assert "<html" in (tmp_path / "out.html").read_text()[:2000].lower()
    assert (tmp_path / "csv" / "run_stats.csv").read_text().startswith("Type,Name,Request Count")
    # 25 s cannot show a memory trend: the slopes are withheld, and say why
    assert all(m["slope_mib_per_h"] is None and m["slope_note"].startswith("too short to estimate")
               for m in summary["memory"].values())
    # a failed run keeps its cluster's folder, inside the run's, and says where
    assert f"cluster run folder kept: {Path(summary['run_dir']) / 'cluster'}" in proc.stderr
    assert (Path(summary["run_dir"]) / "cluster" / "bitcoind").is_dir()
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
    # every trader kept its notification stream open, and the oracle judged what each sent (I18)
    assert check["streams_judged"] == check["traders"] > 0 and check["notifications_streamed"] > 0
    # buyers waited for FUNDED on their streams, not by asking for the order again and again
    assert summary["endpoints"]["ESCROW funded"]["requests"] > 0
    assert summary["endpoints"].get("GET /orders/[id]", {"requests": 0})["requests"] <= created["requests"]
    # the report's counts are Locust's final ones: its last table, printed as it quits
    final = re.findall(r"^POST\s+/orders\s+(\d+)\s+(\d+)\(", (run_dir / "locust.log").read_text(), re.M)[-1]
    assert (created["requests"], created["failures"]) == tuple(map(int, final))
    assert {"app", "bitcoind", "hub"} <= set(summary["memory"]) and (run_dir / "memory.png").is_file()
    # each process's CPU was sampled beside its memory
    assert {"app", "bitcoind", "hub", "locust"} <= set(summary["cpu"]) and (run_dir / "cpu.png").is_file()
    assert summary["cpu"]["app"]["cores"] > 0 and summary["cpu"]["hub"]["cores"] > 0
    assert summary["machine"]["probe_ms_first_third"] > 0  # the machine's own speed, beside them
    # and the app's own work: its statements and hub calls, by method, per escrow settled
    work = summary["app_work"]
    assert work["total"]["db_queries"] > 0 and work["total"]["lnd_calls_by_method"]["AddHoldInvoice"] > 0
    assert work["per_escrow"]["lnd_calls"] == round(work["total"]["lnd_calls"] / summary["totals"]["escrows_settled"], 2)
    assert processes_under(run_dir) == []


def test_load_bad_profile_is_one_clear_error(tmp_path):
    profile = tmp_path / "flat.yaml"
    profile.write_text("name: flat\nstages: [{until: 0.5, users: 1}]\n")
    proc = load("--profile", str(profile))
    assert proc.returncode == 2
    assert f"{profile}: the last stage must end the run (until: 1.0); it ends at 0.5" in proc.stderr


def test_load_bad_topology_is_one_clear_error_before_anything_starts(tmp_path):
    proc = load("--topology", str(tmp_path / "nosuch.yaml"))
    assert proc.returncode == 2
    assert f"{tmp_path / 'nosuch.yaml'}: no such topology file (shipped: " in proc.stderr
    proc = load("--topology", "hub-soak", "--attach", "mine")
    assert proc.returncode == 2
    assert "--topology starts a cluster and --attach uses one: give one of them" in proc.stderr


def test_load_bad_database_is_one_clear_error_before_anything_starts():
    proc = load("--db", "mysql")
    assert proc.returncode == 2
    assert "--db must be sqlite or postgres, not 'mysql'" in proc.stderr
    proc = load("--app-processes", "2")  # SQLite is served by one process
    assert proc.returncode == 2
    assert "several app processes share a PostgreSQL database (SQLite is served by one): add --db postgres" \
        in proc.stderr
