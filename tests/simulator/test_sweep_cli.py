"""`escrowlab simulate --sweep`: the load sweep from the command line, its points in processes of
their own, and one clear error for a sweep that is not one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import HERE


def simulate(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ESCROWLAB_RUNS": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "escrowlab", "simulate", "-c", str(HERE / "golden" / "small.yaml"),
                           "--days", "1", *args], capture_output=True, text=True, timeout=300, env=env)


def test_a_sweep_given_on_the_command_line_runs_and_says_how_busy_it_kept_the_cores(tmp_path):
    proc = simulate(tmp_path, "--sweep", "1,2.5", "--sweep-days", "0.5", "--jobs", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert [(row["multiplier"], row["days"]) for row in doc["verdict"]["sweep"]] == [(1.0, 0.5), (2.5, 0.5)]
    timing = doc["performance"]["sweep"]
    assert (timing["sweep_points"], timing["jobs"]) == (2, 2)
    assert [p["multiplier"] for p in timing["points"]] == [1.0, 2.5]
    assert timing["cores_used"] > 0 and timing["cores"] == os.cpu_count()


def test_a_sweep_that_is_not_one_is_one_clear_error(tmp_path):
    for bad in ("1,two", "0,1", "2,inf"):
        proc = simulate(tmp_path, "--sweep", bad)
        assert proc.returncode == 2
        assert f"--sweep takes load multipliers above 0, separated by commas (e.g. 1,2,4), not '{bad}'" in proc.stderr
    proc = simulate(tmp_path, "--load", "inf")
    assert proc.returncode == 2 and "--load must be a finite number, not inf" in proc.stderr
