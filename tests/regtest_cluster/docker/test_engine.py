"""Choosing the docker backend where no engine answers: one clear message, nothing started."""

from __future__ import annotations

import os
import subprocess

from tests.regtest_cluster.test_cli import ESCROWLAB


def test_cluster_up_docker_without_engine_says_how_to_start_one(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "ESCROWLAB_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([*ESCROWLAB, "cluster", "up", "--backend", "docker", "-t", "line"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "no Docker engine answers" in lines[0] and "no-engine.sock" in lines[0]
    assert "--backend process" in lines[0] and ".ci/dockerd start" in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_scenario_run_attach_with_backend_is_refused():
    proc = subprocess.run([*ESCROWLAB, "scenario", "run", "release_after_delivery", "--attach", "--backend", "docker"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "drop --backend" in proc.stderr
