"""Several processes open the same wallet at once (the app's processes its custody wallet, the
harness its own): each gets the wallet, none an error. Two app processes once answered
``GET /wallet`` with 503 "Unable to obtain an exclusive lock on the database": one was loading
the custody wallet while the other tried to load it too."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from regtest_cluster.nodes.bitcoind import BitcoinRpc

pytestmark = pytest.mark.cluster


def _race(rpc: BitcoinRpc, name: str, openers: int = 8) -> set[str]:
    def open_one(_i: int) -> str:  # a client of its own, as another process would have
        return BitcoinRpc(rpc.url, rpc.user, rpc.password).open_wallet(name).wallet

    with ThreadPoolExecutor(openers) as pool:
        return set(pool.map(open_one, range(openers)))


def test_a_wallet_created_and_loaded_by_many_at_once(bitcoind):
    rpc, name = bitcoind.rpc, f"race-{secrets.token_hex(4)}"
    assert _race(rpc, name) == {name}  # all create at once: one does, the others wait for it
    rpc.call("unloadwallet", name)
    assert name not in rpc.listwallets()
    assert _race(rpc, name) == {name}  # all load the existing file at once
    assert name in rpc.listwallets() and rpc.for_wallet(name).getnewaddress().startswith("bcrt1")
    rpc.call("unloadwallet", name)
