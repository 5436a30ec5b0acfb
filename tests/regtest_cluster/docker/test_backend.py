"""The docker backend on a real engine: the CLI end to end, scenarios on a detached
cluster, a container that dies early, and nothing left behind."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from regtest_cluster.cluster import Cluster, ClusterError
from regtest_cluster.docker import engine
from regtest_cluster.launcher import state_dir
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import parse
from tests.regtest_cluster.test_cli import run

pytestmark = [pytest.mark.cluster, pytest.mark.docker]

PAIR = {"name": "pair", "nodes": [{"name": "a", "funding_sats": 2_000_000}, {"name": "b"}],
        "channels": [{"from": "a", "to": "b", "capacity_sats": 500_000}]}


def test_cluster_docker_detached_runs_scenarios_and_down_leaves_nothing(docker_engine, cluster_env):
    name = f"d{uuid.uuid4().hex[:8]}"
    up = run("cluster", "up", "--backend", "docker", "-t", "hub", "--detach", "--name", name, "--json")
    st = json.loads(up.stdout)
    state = json.loads((state_dir(cluster_env) / f"{name}.json").read_text())
    cluster_id = state["backend_state"]["cluster_id"]
    docker = engine.client(cluster_env)
    try:
        assert state["backend"] == "docker" and st["all_channels_active"]
        assert sorted(engine.leftovers(docker, cluster_id)["containers"]) == sorted(
            n["container"] for n in [state["bitcoind"], *state["nodes"].values()])
        # Endpoints are on 127.0.0.1: the state file serves the app as it does for processes.
        assert all(n["rest_url"].startswith("https://127.0.0.1:") for n in state["nodes"].values())
        paid = json.loads(run("cluster", "pay", "buyer1", "seller2", "7000", "--name", name, "--json").stdout)
        assert paid["status"] == "SUCCEEDED" and paid["hops"] == 2
        scen = run("scenario", "run", "release_after_delivery", "ship_timeout_refund", "--attach",
                   "--name", name, "--json", timeout=900)
        summary = json.loads(scen.stdout)
        assert summary["failed"] == 0 and summary["passed"] == 2, scen.stderr[-3000:]
        again = json.loads(run("cluster", "status", "--name", name, "--json").stdout)
        assert again["all_channels_active"]  # the scenarios left the cluster running
    finally:
        down = run("cluster", "down", "--name", name, "--json", check=False)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["backend"] == "docker"
    assert engine.leftovers(docker, cluster_id) == {"containers": [], "networks": [], "volumes": []}
    assert not Path(st["run_dir"]).exists()


class _BadFlagBackend:
    """Wraps a docker backend so every lnd gets a flag it rejects: it dies as it starts."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def lnd(self, *args, **kwargs):
        node = self.inner.lnd(*args, **kwargs)
        node.extra_args = ("--no-such-flag",)
        node.reconfigure()
        return node


def test_start_container_exiting_early_reports_its_logs_and_leaves_nothing(cluster_env, node_binaries,
                                                                             cluster_backend):
    backend = _BadFlagBackend(cluster_backend("dies"))
    run_dir = new_run_dir(cluster_env.runs_dir, "dies")
    c = Cluster(parse(PAIR), node_binaries, run_dir, backend=backend)
    with pytest.raises(ClusterError) as err:
        c.start()
    message = str(err.value)
    assert "exited unexpectedly" in message and "exited with code" in message
    assert "no-such-flag" in message  # the container's own output says why
    assert f"run folder kept: {run_dir}" in message
    assert engine.leftovers(backend.docker, backend.cluster_id) == {"containers": [], "networks": [], "volumes": []}
    assert (run_dir / "lnd-a").is_dir()  # kept, with the node folders, for whoever debugs it
    shutil.rmtree(run_dir)
