"""On-chain deposits on a real bitcoind: credited once, only after k confirmations."""

from __future__ import annotations

import pytest

from reference_app.services.custodial import custody_wallet, deposit_address, reconcile, scan_deposits
from reference_app.services.custodial.deposits import deposits_of
from regtest_cluster.nodes.bitcoind import btc
from regtest_cluster.waiting import wait_for
from tests.reference_app.custodial.conftest import add_users, balances, make_ctx

pytestmark = pytest.mark.cluster
K = 3


def test_deposit_address_is_stable_and_labelled(custody):
    alice, bob = add_users(custody.ctx, 2)
    address = deposit_address(custody.ctx, custody.wallet, alice)
    assert deposit_address(custody.ctx, custody.wallet, alice) == address
    assert deposit_address(custody.ctx, custody.wallet, bob) != address
    info = custody.wallet.getaddressinfo(address)
    assert (info["ismine"], info["labels"]) == (True, [f"user:{alice}"])
    assert info["hdkeypath"].startswith("m/84h/1h/0h/0/")


def test_deposit_credited_once_after_k_confirmations(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    address = deposit_address(ctx, custody.wallet, alice)
    txid = custody.miner.sendtoaddress(address, 120_000)

    # bitcoind tells wallets about mempool transactions asynchronously
    seen = wait_for(lambda: scan_deposits(ctx, custody.wallet, K), timeout=10, what="the deposit in the mempool")
    assert [(d.txid, d.status, d.confirmations) for d in seen] == [(txid, "SEEN", 0)]
    for confs in (1, 2):
        custody.mine(1)
        assert [(d.status, d.confirmations) for d in scan_deposits(ctx, custody.wallet, K)] == [("SEEN", confs)]
        assert balances(ctx, alice).available == 0
        assert reconcile(ctx, custody.wallet).ok  # the uncredited deposit is not custody money yet

    custody.mine(1)
    assert [(d.status, d.amount_sats) for d in scan_deposits(ctx, custody.wallet, K)] == [("CREDITED", 120_000)]
    assert balances(ctx, alice).available == 120_000

    custody.mine(1)
    scan_deposits(ctx, custody.wallet, K)
    scan_deposits(ctx, custody.wallet, K)
    assert balances(ctx, alice).available == 120_000
    assert [d.status for d in deposits_of(ctx, alice)] == ["CREDITED"]
    report = reconcile(ctx, custody.wallet)
    assert report.ok, report.describe()
    assert report.totals["hot_wallet"] == 120_000


def test_deposit_reorged_out_before_k_is_never_credited(bitcoind, tmp_path):
    """On a lone bitcoind: the shared cluster's LND nodes are kept out of reorgs."""
    ctx = make_ctx(tmp_path)
    wallet = custody_wallet(bitcoind.rpc, "custody")
    (alice,) = add_users(ctx, 1)
    address = deposit_address(ctx, wallet, alice)
    miner = bitcoind.miner()
    txid = miner.call("sendtoaddress", address, btc(80_000), "", "", False, True)  # replaceable
    (block,) = bitcoind.mine(1)
    assert [(d.status, d.confirmations) for d in scan_deposits(ctx, wallet, K)] == [("SEEN", 1)]

    bitcoind.rpc.invalidateblock(block)
    # Back in the mempool, the deposit is double-spent back to the miner and that wins.
    wait_for(lambda: txid in bitcoind.rpc.getrawmempool(), timeout=10, what="the deposit back in the mempool")
    miner.bumpfee(txid, {"outputs": [{miner.getnewaddress(): btc(79_000)}]})
    bitcoind.mine(K + 1)
    assert wallet.gettransaction(txid)["confirmations"] < 0

    assert [(d.txid, d.status) for d in scan_deposits(ctx, wallet, K)] == [(txid, "GONE")]
    bitcoind.mine(K)
    scan_deposits(ctx, wallet, K)
    assert balances(ctx, alice).available == 0
    assert [d.status for d in deposits_of(ctx, alice)] == ["GONE"]
    report = reconcile(ctx, wallet)
    assert report.ok, report.describe()
    wallet.close()
    ctx.db.dispose()
