"""The regtest bitcoind relays every ordinary wallet spend.

Knots refuses CAT-21 "parasites" (any nLockTime of 21) unless told not to, and bitcoind's
wallet picks nLockTime 21 on its own now and then on a young chain: CI once failed an
on-chain escrow test on "Insufficient funds" that way."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster


def test_a_wallet_spend_with_nlocktime_21_reaches_the_mempool(bitcoind):
    wallet = bitcoind.miner()
    raw = wallet.call("createrawtransaction", [], {wallet.getnewaddress(): 0.001}, 21)
    funded = wallet.call("fundrawtransaction", raw)["hex"]
    signed = wallet.call("signrawtransactionwithwallet", funded)["hex"]
    assert bitcoind.rpc.call("decoderawtransaction", signed)["locktime"] == 21
    txid = bitcoind.rpc.call("sendrawtransaction", signed)
    assert txid in bitcoind.rpc.call("getrawmempool")
