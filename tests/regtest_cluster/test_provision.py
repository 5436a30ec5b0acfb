"""Provisioning errors name what is missing and how to bring your own binaries."""

import pytest

from regtest_cluster.env import ClusterEnv
from regtest_cluster.provision import MissingBinaries, ProvisionError, bitcoind, lnd, resolve


def test_install_lnd_without_go_names_go_and_the_override(monkeypatch, tmp_path):
    monkeypatch.setattr(lnd, "which", lambda tool: None)
    with pytest.raises(ProvisionError, match=r"go not found.*set LND and LNCLI"):
        lnd.install(tmp_path, lambda _m: None)


def test_install_bitcoind_without_apt_names_apt_and_the_override(monkeypatch, tmp_path):
    monkeypatch.setattr(bitcoind, "which", lambda tool: None)
    with pytest.raises(ProvisionError, match=r"apt-get not found.*Set BITCOIND and BITCOIN_CLI"):
        bitcoind.install(tmp_path, lambda _m: None)


def test_resolve_empty_cache_lists_missing_binaries_and_both_remedies(tmp_path):
    env = ClusterEnv.from_environ({"ESCROWLAB_CACHE": str(tmp_path)})
    with pytest.raises(MissingBinaries, match=r"bitcoind, bitcoin_cli, lnd, lncli.*nodes install.*BITCOIND"):
        resolve(env)


def test_lnd_cache_key_changes_with_build_tags(monkeypatch):
    key = lnd.cache_key()
    monkeypatch.setattr(lnd, "LND_BUILD_TAGS", ("invoicesrpc",))
    assert lnd.cache_key() != key and key.startswith(lnd.LND_VERSION)
