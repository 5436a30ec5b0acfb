"""SimLN's sim.json from a cluster, and the topology's accept_keysend (which SimLN's keysend payments need).

The documented format is SimLN's README (github.com/bitcoin-dev-project/sim-ln): an LND node is
``id``, ``address``, ``macaroon``, ``cert``; an activity is ``source``, ``destination``,
``interval_secs``, ``amount_msat``, optionally ``count`` and ``start_secs``. The checks below are
written from that page, not from the code under test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from regtest_cluster.cluster import Cluster
from regtest_cluster.docker import export
from regtest_cluster.docker.images import public_tags
from regtest_cluster.provision import Binaries
from regtest_cluster.simln import Activity, SimlnError, parse_activity, sim_json, warnings
from regtest_cluster.topology import TopologyError, load, parse

DOC_LND_NODE = {"id": str, "address": str, "macaroon": str, "cert": str}
DOC_ACTIVITY = {"source": str, "destination": str, "interval_secs": int, "amount_msat": int}
DOC_ACTIVITY_OPTIONAL = {"count": int, "start_secs": int}


def documented_problems(config: dict) -> list[str]:
    """Where ``config`` leaves SimLN's documented fields and JSON types."""
    problems = [f"top-level {k}" for k in config if k not in ("nodes", "activity")]
    for i, node in enumerate(config["nodes"]):
        problems += [f"nodes[{i}] lacks {k}" for k in DOC_LND_NODE if k not in node]
        problems += [f"nodes[{i}].{k} undocumented" for k in node if k not in DOC_LND_NODE]
        problems += [f"nodes[{i}].{k} not {t.__name__}" for k, t in DOC_LND_NODE.items() if type(node.get(k)) is not t]
        if not node["address"].startswith("https://"):  # older SimLN insists on https://
            problems.append(f"nodes[{i}].address {node['address']!r} is not https://host:port")
    ids = {n["id"] for n in config["nodes"]}
    for i, act in enumerate(config["activity"]):
        allowed = {**DOC_ACTIVITY, **DOC_ACTIVITY_OPTIONAL}
        problems += [f"activity[{i}] lacks {k}" for k in DOC_ACTIVITY if k not in act]
        problems += [f"activity[{i}].{k} undocumented" for k in act if k not in allowed]
        problems += [f"activity[{i}].{k} not {allowed[k].__name__}" for k in act
                     if k in allowed and type(act[k]) is not allowed[k]]
        if act["source"] not in ids:
            problems.append(f"activity[{i}].source is no node's id")
    return problems


def status(keysend: dict[str, bool] | None = None, down: tuple[str, ...] = ()) -> dict:
    """What ``cluster status --json`` prints, for a three-node line (the fields sim.json reads)."""
    keysend = keysend or {}
    return {"topology": "line", "nodes": [
        {"name": name, "role": role, "pubkey": f"02{i:064x}"[:66], "grpc_host": f"127.0.0.1:{10009 + i}",
         "rest_url": f"https://127.0.0.1:{8080 + i}", "tls_cert": f"/runs/0001-line/lnd-{name}/tls.cert",
         "macaroon": f"/runs/0001-line/lnd-{name}/data/chain/bitcoin/regtest/admin.macaroon",
         "accept_keysend": keysend.get(name, True), "running": name not in down}
        for i, (name, role) in enumerate([("alice", "buyer"), ("bob", "router"), ("carol", "seller")])]}


def test_sim_json_random_activity_lists_every_lnd_in_the_documented_form():
    config = sim_json(status())
    assert documented_problems(config) == []
    assert config["activity"] == []  # no activity: SimLN pays at random among the nodes
    assert [n["id"] for n in config["nodes"]] == ["alice", "bob", "carol"]
    assert config["nodes"][1] == {"id": "bob", "address": "https://127.0.0.1:10010",
                                  "macaroon": "/runs/0001-line/lnd-bob/data/chain/bitcoin/regtest/admin.macaroon",
                                  "cert": "/runs/0001-line/lnd-bob/tls.cert"}
    json.dumps(config)  # plain JSON


def test_sim_json_defined_activity_has_documented_fields_and_integer_types():
    acts = [parse_activity("alice:carol:10:1000000"), parse_activity("carol:alice:2:5000:10:20")]
    config = sim_json(status(), acts)
    assert documented_problems(config) == []
    assert config["activity"] == [
        {"source": "alice", "destination": "carol", "interval_secs": 10, "amount_msat": 1_000_000},
        {"source": "carol", "destination": "alice", "interval_secs": 2, "amount_msat": 5000,
         "count": 10, "start_secs": 20}]


def test_sim_json_only_some_nodes_keeps_sources_among_them():
    config = sim_json(status(), [Activity("alice", "bob", 5, 1000)], only=["alice"])
    assert [n["id"] for n in config["nodes"]] == ["alice"]
    assert documented_problems(config) == []  # a destination outside nodes is allowed by SimLN
    with pytest.raises(SimlnError, match="activity source 'bob' is not one of the nodes SimLN controls"):
        sim_json(status(), [Activity("bob", "alice", 5, 1000)], only=["alice"])


@pytest.mark.parametrize("acts, only, words", [
    ([Activity("alice", "zed", 1, 1)], None, "destination 'zed' is not a node of the cluster"),
    ([Activity("zed", "alice", 1, 1)], None, "source 'zed' is not one of the nodes"),
    ([], ["alice", "ghost"], "no node named 'ghost'"),
])
def test_sim_json_unknown_node_names_it(acts, only, words):
    with pytest.raises(SimlnError, match=words):
        sim_json(status(), acts, only)


@pytest.mark.parametrize("spec, words", [
    ("alice:bob:10", "expected SOURCE:DESTINATION:INTERVAL_SECS:AMOUNT_MSAT"),
    ("alice:bob:10:1000:1:2:3", "expected SOURCE"),
    ("alice::10:1000", "expected SOURCE"),
    ("alice:bob:ten:1000", "interval_secs must be a whole number, got 'ten'"),
    ("alice:bob:10:1.5", "amount_msat must be a whole number"),
    ("alice:bob:0:1000", "interval_secs must be at least 1"),
    ("alice:bob:10:0", "amount_msat must be at least 1"),
    ("alice:bob:10:1000:0", "count must be at least 1"),
    ("alice:bob:10:1000:5:70000", "start_secs must be 0 to 65535"),
    ("alice:alice:10:1000", "source and destination are both 'alice'"),
])
def test_parse_activity_bad_spec_names_the_part(spec, words):
    with pytest.raises(SimlnError, match=words):
        parse_activity(spec)


def test_warnings_name_receivers_without_keysend_and_nodes_down():
    st = status(keysend={"carol": False}, down=("bob",))
    said = warnings(st, sim_json(st))
    assert any("carol do not accept keysend" in w and "accept_keysend: true" in w for w in said)
    assert any("bob not running" in w for w in said)
    # carol only sends here: her keysend does not matter
    quiet = sim_json(st, [Activity("carol", "alice", 1, 1000)], only=["carol"])
    assert warnings(st, quiet) == []


# --- accept_keysend in topologies and on lnd's command line

def _topo(**over) -> dict:
    data = {"name": "t", "nodes": [{"name": "a", "funding_sats": 1_000_000}, {"name": "b"}],
            "channels": [{"from": "a", "to": "b", "capacity_sats": 100_000}]}
    data.update(over)
    return data


def test_topology_keysend_is_off_by_default_cluster_wide_or_per_node():
    assert [parse(_topo()).keysend(n) for n in "ab"] == [False, False]
    assert [parse(_topo(accept_keysend=True)).keysend(n) for n in "ab"] == [True, True]
    per_node = _topo(accept_keysend=True)
    per_node["nodes"][1]["accept_keysend"] = False
    assert [parse(per_node).keysend(n) for n in "ab"] == [True, False]
    only_b = _topo()
    only_b["nodes"][1]["accept_keysend"] = True
    assert [parse(only_b).keysend(n) for n in "ab"] == [False, True]


@pytest.mark.parametrize("name", ["hub", "line"])
def test_shipped_topologies_accept_keysend_on_every_node(name):
    topo = load(name)
    assert all(topo.keysend(n.name) for n in topo.nodes)


@pytest.mark.parametrize("where, value", [("top", "yes please"), ("top", 1), ("node", "true")])
def test_topology_keysend_not_a_boolean_names_the_field(where, value):
    data = _topo()
    if where == "top":
        data["accept_keysend"], field = value, "accept_keysend"
    else:
        data["nodes"][0]["accept_keysend"], field = value, "nodes[0].accept_keysend"
    with pytest.raises(TopologyError, match=rf"t\.yaml: {re.escape(field)}: .*boolean"):
        parse(data, "t.yaml")


def test_process_backend_lnd_gets_accept_keysend_only_where_the_topology_says(tmp_path):
    data = _topo()
    data["nodes"][1]["accept_keysend"] = True
    fake = Binaries(*(tmp_path / b for b in ("bitcoind", "bitcoin-cli", "lnd", "lncli")))
    cluster = Cluster(parse(data), fake, tmp_path)
    assert "--accept-keysend" not in cluster.nodes["a"].daemon.argv
    assert "--accept-keysend" in cluster.nodes["b"].daemon.argv
    cluster.nodes["b"].reconfigure()  # a restart on new ports keeps it
    assert "--accept-keysend" in cluster.nodes["b"].daemon.argv


def test_docker_backend_lnd_gets_accept_keysend_only_where_the_topology_says():
    data = _topo()
    data["nodes"][0]["accept_keysend"] = True
    services = export.compose(parse(data), public_tags())["services"]
    assert "--accept-keysend" in services["lnd-a"]["command"]
    assert "--accept-keysend" not in services["lnd-b"]["command"]


# --- on a real cluster

TINY = """\
name: simln
nodes:
  - {name: payer, funding_sats: 3_000_000, accept_keysend: true}
  - {name: payee, accept_keysend: true}
  - {name: plain}
channels:
  - {from: payer, to: payee, capacity_sats: 1_000_000}
  - {from: payer, to: plain, capacity_sats: 1_000_000}
"""


def _escrowlab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "escrowlab", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode:
        raise AssertionError(f"escrowlab {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def test_export_simln_bad_activity_is_one_line_before_any_cluster_is_asked():
    proc = _escrowlab("cluster", "export", "simln", "--name", f"none-{uuid.uuid4().hex[:6]}",
                      "--activity", "a:b:1", check=False)
    assert proc.returncode == 2
    # printed as typed (rich once made ':b:' an emoji), and before looking for the cluster
    assert proc.stderr.strip() == ("error: --activity 'a:b:1': expected "
                                   "SOURCE:DESTINATION:INTERVAL_SECS:AMOUNT_MSAT[:COUNT[:START_SECS]]")


@pytest.mark.cluster
def test_export_simln_from_a_running_cluster_points_at_real_files_and_keysend_nodes(tmp_path):
    topo = tmp_path / "simln.yaml"
    topo.write_text(TINY)
    name = f"s{uuid.uuid4().hex[:8]}"
    _escrowlab("cluster", "up", "-t", str(topo), "--detach", "--name", name, "--json")
    try:
        out = tmp_path / "sim.json"
        proc = _escrowlab("cluster", "export", "simln", "--name", name, "-o", str(out),
                          "--activity", "payer:payee:1:2000:3")
        config = json.loads(out.read_text())
        assert documented_problems(config) == []
        assert [n["id"] for n in config["nodes"]] == ["payer", "payee", "plain"]
        for node in config["nodes"]:
            assert Path(node["macaroon"]).is_file() and Path(node["cert"]).is_file()
        assert config["activity"] == [{"source": "payer", "destination": "payee", "interval_secs": 1,
                                       "amount_msat": 2000, "count": 3}]
        assert "warning" not in proc.stderr  # payee accepts keysend
        # plain's lnd runs without --accept-keysend: random activity would fail paying it, and the export says so
        random_run = _escrowlab("cluster", "export", "simln", "--name", name)
        assert json.loads(random_run.stdout)["activity"] == []
        assert "plain do not accept keysend" in random_run.stderr
        st = json.loads(_escrowlab("cluster", "status", "--name", name, "--json").stdout)
        # lnd announces keysend (feature bit 55) exactly where --accept-keysend was given
        for node in st["nodes"]:
            info = json.loads(subprocess.run(node["cli"].split() + ["getinfo"], capture_output=True, text=True,
                                             check=True).stdout)
            assert ("55" in info.get("features", {})) == (node["name"] != "plain"), (node["name"], info["features"])
            assert f"https://{node['grpc_host']}" in {n["address"] for n in config["nodes"]}
    finally:
        down = _escrowlab("cluster", "down", "--name", name, check=False)
    assert down.returncode == 0, down.stderr
