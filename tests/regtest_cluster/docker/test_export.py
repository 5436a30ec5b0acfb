"""Exported compose files and Kubernetes manifests: valid offline, and faithful to the topology."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from regtest_cluster.docker import export
from regtest_cluster.docker.images import public_tags
from regtest_cluster.topology import load
from tests.regtest_cluster.test_cli import run


@pytest.mark.parametrize("topology", ["hub", "line"])
def test_export_k8s_manifests_validate_against_the_kubernetes_schemas(tmp_path, topology):
    out = tmp_path / "k8s.yaml"
    run("cluster", "export", "k8s", "-t", topology, "-o", str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema error
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    topo = load(topology)
    for n in topo.nodes:
        assert ("StatefulSet", f"lnd-{n.name}") in kinds and ("Service", f"lnd-{n.name}") in kinds
        assert ("Secret", f"lnd-{n.name}-tls") in kinds
    assert ("StatefulSet", "bitcoind") in kinds and ("Secret", "bitcoind-rpc") in kinds
    job = next(d for d in docs if d["kind"] == "Job")
    steps = [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"] + job["spec"]["template"]["spec"]["containers"]]
    assert steps == ["1-mature", "2-addresses", "3-fund", "4-open", "5-confirm"]
    # No credential in clear text outside the Secrets.
    secret = next(d for d in docs if d["metadata"]["name"] == "bitcoind-rpc")["stringData"]["rpcpassword"]
    assert sum(secret in yaml.safe_dump(d) for d in docs) == 1


def test_export_compose_has_every_node_with_volume_healthcheck_and_loopback_ports(tmp_path):
    out = tmp_path / "docker-compose.yml"
    run("cluster", "export", "compose", "-t", "hub", "-o", str(out))
    services = yaml.safe_load(out.read_text())["services"]
    nodes = ["bitcoind", *(f"lnd-{n.name}" for n in load("hub").nodes)]
    for svc in nodes:
        s = services[svc]
        assert s["healthcheck"]["test"][0] == "CMD" and any(v.endswith(":/data") for v in s["volumes"])
        assert s["ports"] and all(p.startswith("127.0.0.1:") for p in s["ports"])
    setup = [k for k in services if k.startswith("setup-")]
    assert setup == ["setup-1-mature", "setup-2-addresses", "setup-3-fund", "setup-4-open", "setup-5-confirm"]
    for before, after in zip(setup, setup[1:]):
        assert services[after]["depends_on"][before]["condition"] == "service_completed_successfully"
    if shutil.which("docker-compose"):  # Debian's docker-compose checks the file offline
        check = subprocess.run(["docker-compose", "-f", str(out), "config", "-q"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_setup_steps_fund_each_node_its_topology_amount_and_open_each_channel():
    topo = load("hub")
    flags = {n.name: "" for n in topo.nodes}
    plan = {s.name: s.script for s in export.steps(topo, "pw", flags)}
    for n in topo.nodes:
        share, rest = divmod(n.funding_sats, n.utxos)
        assert f"seq 1 {n.utxos}" in plan["addresses"]
        assert f"amount={export_btc(share)}; [ $i -eq 0 ] && amount={export_btc(share + rest)}" in plan["fund"]
    for ch in topo.channels:
        assert f'"local_funding_amount":{ch.capacity_sats},"push_sat":{ch.push_sats}' in plan["open"]
        assert f"@lnd-{ch.to}:9735" in plan["open"]


def test_export_local_images_with_own_binaries_says_why(tmp_path, monkeypatch):
    fake = tmp_path / "bitcoind"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BITCOIND", str(fake))
    proc = run("cluster", "export", "compose", "-t", "hub", "--images", "local", check=False)
    assert proc.returncode == 2
    assert "BITCOIND point at binaries of your own" in proc.stderr and "--images public" in proc.stderr


def export_btc(sats: int) -> str:
    from regtest_cluster.nodes.bitcoind import btc

    return str(btc(sats))


def test_public_images_are_the_pinned_versions():
    from regtest_cluster.versions import LND_VERSION

    assert public_tags().lnd.endswith(":" + LND_VERSION)


@pytest.mark.parametrize("kind", ["compose", "k8s"])
def test_export_of_a_topology_with_ldk_nodes_is_refused_naming_them(tmp_path, kind):
    out = tmp_path / "out.yaml"
    proc = run("cluster", "export", kind, "-t", "hub-ldk", "--images", "public", "-o", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "has LDK nodes (buyer2, seller2)" in proc.stderr and "--backend docker" in proc.stderr
    assert not out.exists()  # nothing half-written
