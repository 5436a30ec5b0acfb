"""The `escrowlab` command on real nodes, run as a user runs it: as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import processes_under

ESCROWLAB = [sys.executable, "-m", "escrowlab"]


def run(*args: str, check: bool = True, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*ESCROWLAB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"escrowlab {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def test_help_lists_every_subcommand():
    out = run("--help").stdout
    for cmd in ("nodes", "cluster", "bench", "demo"):
        assert cmd in out


def test_cluster_up_malformed_topology_gives_one_line_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnodes:\n  - {name: a, funding_sats: 1000000}\n"
                   "channels:\n  - {from: a, to: ghost, capacity_sats: 100000}\n")
    proc = run("cluster", "up", "--topology", str(bad), check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "channels[0].to: unknown node 'ghost'" in lines[0]


def test_cluster_status_without_cluster_says_how_to_start_one():
    proc = run("cluster", "status", "--name", f"none-{uuid.uuid4().hex[:6]}", check=False)
    assert proc.returncode == 2
    assert "escrowlab cluster up --detach" in proc.stderr


def test_nodes_doctor_json_lists_every_binary():
    report = json.loads(run("nodes", "doctor", "--json").stdout)
    assert set(report["binaries"]) == {"bitcoind", "bitcoin_cli", "lnd", "lncli"}
    assert report["ok"] is True


@pytest.mark.cluster
def test_cluster_detached_status_agrees_with_bitcoin_cli_and_lncli_and_down_leaves_nothing():
    name = f"t{uuid.uuid4().hex[:8]}"
    up = run("cluster", "up", "--topology", "hub", "--detach", "--name", name, "--json")
    st = json.loads(up.stdout)
    run_dir = st["run_dir"]
    try:
        assert st["all_channels_active"] and st["declared_channels"] == 4
        again = json.loads(run("cluster", "status", "--name", name, "--json").stdout)
        assert again["all_channels_active"]

        # bitcoin-cli and lncli, run by hand against the printed endpoints, agree.
        b = again["bitcoind"]
        height = subprocess.run(b["cli"].split() + ["getblockcount"], capture_output=True, text=True, check=True)
        assert int(height.stdout) == b["height"]
        for node in again["nodes"]:
            info = json.loads(subprocess.run(node["cli"].split() + ["getinfo"], capture_output=True,
                                             text=True, check=True).stdout)
            assert info["identity_pubkey"] == node["pubkey"]
            assert info["num_active_channels"] == node["active_channels"] == node["expected_channels"]
            chans = json.loads(subprocess.run(node["cli"].split() + ["listchannels"], capture_output=True,
                                              text=True, check=True).stdout)["channels"]
            assert sorted(c["channel_point"] for c in chans) == sorted(c["channel_point"] for c in node["channels"])

        paid = json.loads(run("cluster", "pay", "buyer2", "seller1", "5000", "--name", name, "--json").stdout)
        assert paid["status"] == "SUCCEEDED" and paid["hops"] == 2
        mined = json.loads(run("cluster", "mine", "7", "--name", name, "--json").stdout)
        assert mined["height"] == b["height"] + 7
        funded = json.loads(run("cluster", "fund", "seller1", "50000", "--name", name, "--json").stdout)
        assert len(funded["txid"]) == 64
        bad = run("cluster", "pay", "buyer2", "nobody", "5000", "--name", name, check=False)
        assert bad.returncode == 2 and "no node named 'nobody'" in bad.stderr
    finally:
        down = run("cluster", "down", "--name", name, "--json", check=False)
    assert down.returncode == 0, down.stderr
    assert processes_under(run_dir) == []
    assert not Path(run_dir).exists()


@pytest.mark.cluster
def test_cluster_up_twice_with_one_name_is_refused_before_starting_anything(tmp_path):
    name = f"t{uuid.uuid4().hex[:8]}"
    runs = tmp_path / "runs"  # this test's own: other tests make run folders meanwhile
    first = json.loads(run("cluster", "up", "-t", "line", "--detach", "--name", name, "--json",
                           ESCROWLAB_RUNS=str(runs)).stdout)
    try:
        assert Path(first["run_dir"]).parent == runs
        before = set(runs.iterdir())
        second = run("cluster", "up", "-t", "line", "--detach", "--name", name, check=False, ESCROWLAB_RUNS=str(runs))
        assert second.returncode == 2
        assert "already recorded" in second.stderr and f"cluster down --name {name}" in second.stderr
        assert set(runs.iterdir()) == before  # refused before anything started
    finally:
        run("cluster", "down", "--name", name, ESCROWLAB_RUNS=str(runs))
    assert processes_under(first["run_dir"]) == []


@pytest.mark.cluster
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cluster_up_foreground_signal_stops_every_node(sig):
    proc = subprocess.Popen([*ESCROWLAB, "cluster", "up", "-t", "line"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_dir, lines = None, []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "run folder" in line and run_dir is None:
                run_dir = line.split("run folder", 1)[1].split()[0]
            if "press Ctrl-C" in line:
                break
        assert run_dir and processes_under(run_dir), "".join(lines)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = processes_under(run_dir) if run_dir else []
        for pid in left:  # a failure here must not leave the nodes running for the rest of the suite
            os.kill(pid, signal.SIGKILL)
    assert left == []
    assert not Path(run_dir).exists()
