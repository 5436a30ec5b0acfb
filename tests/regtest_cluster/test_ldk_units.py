"""LDK support without nodes: topology validation, ldkd provisioning's progress, errors and cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtest_cluster.provision import ProvisionError
from regtest_cluster.provision import ldk as ldk_provision
from regtest_cluster.topology import TopologyError, load, parse


def test_hub_ldk_topology_has_ldk_buyer_and_seller() -> None:
    topo = load("hub-ldk")
    assert {n.name: n.impl for n in topo.nodes} == {
        "hub": "lnd", "buyer1": "lnd", "buyer2": "ldk", "seller1": "lnd", "seller2": "ldk"}
    assert topo.impl("buyer2") == "ldk"
    # the same network as `hub`, only two implementations changed
    hub = load("hub")
    assert [(c.from_, c.to, c.capacity_sats, c.push_sats) for c in topo.channels] == \
        [(c.from_, c.to, c.capacity_sats, c.push_sats) for c in hub.channels]


def test_impl_defaults_to_lnd() -> None:
    topo = parse({"name": "t", "nodes": [{"name": "a"}]})
    assert topo.node("a").impl == "lnd"


def test_unknown_impl_is_refused_by_name() -> None:
    with pytest.raises(TopologyError, match=r"nodes\[1\]\.impl: unknown implementation 'cln' \(known: lnd, ldk\)"):
        parse({"name": "t", "nodes": [{"name": "a"}, {"name": "b", "impl": "cln"}]})


def test_hub_must_stay_lnd() -> None:
    with pytest.raises(TopologyError, match=r"nodes\[0\]\.impl: the hub 'hub' must stay LND"):
        parse({"name": "t", "nodes": [{"name": "hub", "role": "hub", "impl": "ldk"}]})


def test_build_progress_counts_crates_from_cargo_output() -> None:
    p = ldk_provision.BuildProgress(total=267)
    assert p.feed("  Downloaded tiny_http v0.12.0")
    assert p.describe() == "downloading crates: 1"
    assert p.feed("   Compiling proc-macro2 v1.0.95")
    assert not p.feed("   Compiling libc v0.2.174")
    assert p.describe() == "compiling: 2/~267 crates (libc)"
    p.feed("error[E0425]: cannot find value `x` in this scope")
    p.feed("warning: unused variable")
    assert p.errors == ["error[E0425]: cannot find value `x` in this scope"]


def test_missing_cargo_is_one_line_naming_the_log(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ldk_provision.shutil, "which", lambda _tool: None)
    with pytest.raises(ProvisionError) as exc:
        ldk_provision.install(tmp_path, lambda _m: None)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("cargo not found")
    assert str(ldk_provision.build_log(tmp_path)) in message
    assert ldk_provision.build_log(tmp_path).is_file()


def test_failed_build_is_one_line_with_the_first_error(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "cargo"
    fake.write_text("#!/bin/sh\necho '   Compiling ldkd v0.1.0'\necho 'error: could not compile `ldkd`' \nexit 101\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ldk_provision.shutil, "which", lambda _tool: str(fake))
    with pytest.raises(ProvisionError) as exc:
        ldk_provision.install(tmp_path / "cache", lambda _m: None)
    message = str(exc.value)
    assert "\n" not in message
    assert "cargo exit 101" in message and "could not compile `ldkd`" in message
    assert str(ldk_provision.build_log(tmp_path / "cache")) in message


def test_cache_key_names_the_pinned_version_and_is_stable() -> None:
    key = ldk_provision.cache_key()
    assert key.startswith(ldk_provision.ldk_node_version() + "-") and key == ldk_provision.cache_key()
    assert ldk_provision.ldk_node_version() == "0.7.1"


def test_missing_ldkd_names_the_install_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LDKD", raising=False)
    with pytest.raises(ldk_provision.LdkdMissing, match=r"escrowlab nodes install --ldk"):
        ldk_provision.resolve(tmp_path)
