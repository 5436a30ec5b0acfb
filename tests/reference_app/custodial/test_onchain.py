"""Batched on-chain withdrawals from the custody wallet, on the real cluster."""

from __future__ import annotations

import pytest

from reference_app.services.custodial import (check_batches, deposit_address, reconcile, request_onchain_withdrawal,
                                              run_withdrawal_batch, scan_deposits)
from reference_app.services.custodial.ledger import UserBalances
from reference_app.services.custodial import onchain
from reference_app.services.custodial.onchain import withdrawal_requests
from reference_app.store.models import utcnow
from regtest_cluster.nodes.bitcoind import sats
from tests.reference_app.custodial.conftest import add_users, balances

pytestmark = pytest.mark.cluster
K = 3


def deposit(custody, users: list[int], amount: int, confirmations: int = K) -> None:
    for user in users:
        custody.miner.sendtoaddress(deposit_address(custody.ctx, custody.wallet, user), amount)
    custody.mine(confirmations)
    credited = [d for d in scan_deposits(custody.ctx, custody.wallet, confirmations) if d.status == "CREDITED"]
    assert len(credited) == len(users)


def claimed_batch(custody) -> tuple[int, int, list]:
    """alice (100,000 sats deposited) asks to withdraw 30,000; a batch claims it, and the
    process stops there, before the wallet's ``send``: (alice, batch id, outputs)."""
    (alice,) = add_users(custody.ctx, 1)
    deposit(custody, [alice], 100_000)
    request_onchain_withdrawal(custody.ctx, alice, custody.miner.getnewaddress(), 30_000)
    batch_id, outputs = onchain._claim(custody.ctx, max_outputs=10)
    return alice, batch_id, outputs


def assert_reconciled(custody) -> dict:
    report = reconcile(custody.ctx, custody.wallet)
    assert report.ok, report.describe()
    return report.totals


def test_batch_pays_several_users_in_one_transaction(custody):
    ctx = custody.ctx
    users = add_users(ctx, 3)
    deposit(custody, users, 200_000)
    amounts = [50_000, 60_000, 70_000]
    targets = [custody.miner.getnewaddress() for _ in users]
    for user, address, amount in zip(users, targets, amounts):
        request_onchain_withdrawal(ctx, user, address, amount, key="payday", wallet=custody.wallet)
        assert balances(ctx, user) == UserBalances(available=200_000 - amount, held=0, inflight=amount)

    batch = run_withdrawal_batch(ctx, custody.wallet, confirmations=K)
    assert (batch.status, len(batch.request_ids), batch.total_sats) == ("BROADCAST", 3, sum(amounts))
    assert run_withdrawal_batch(ctx, custody.wallet, confirmations=K) is None  # nothing left pending
    tx = custody.cluster.bitcoind.rpc.call("getrawtransaction", batch.txid, True)
    paid = {o["scriptPubKey"].get("address"): sats(o["value"]) for o in tx["vout"]}
    shares = [amount - paid[address] for address, amount in zip(targets, amounts)]
    assert sum(shares) == batch.miner_fee_sats > 0  # each user paid a share of the one fee
    assert max(shares) - min(shares) <= 1
    assert assert_reconciled(custody)["onchain_outgoing"] == sum(amounts)

    custody.mine(K - 1)
    assert [(b.status, b.confirmations) for b in check_batches(ctx, custody.wallet, K)] == [("BROADCAST", K - 1)]
    assert balances(ctx, users[0]).inflight == amounts[0]
    custody.mine(1)
    assert [b.status for b in check_batches(ctx, custody.wallet, K)] == ["CONFIRMED"]
    for user, amount in zip(users, amounts):
        assert balances(ctx, user) == UserBalances(available=200_000 - amount, held=0, inflight=0)
        assert [r.status for r in withdrawal_requests(ctx, user)] == ["CONFIRMED"]
    totals = assert_reconciled(custody)
    assert (totals["hot_wallet"], totals["onchain_outgoing"]) == (600_000 - sum(amounts), 0)


def test_batch_refused_by_wallet_keeps_requests_reserved(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    deposit(custody, [alice], 100_000, confirmations=1)  # credited at 1, but batches spend only K-deep coins
    request_onchain_withdrawal(ctx, alice, custody.miner.getnewaddress(), 40_000)

    refused = run_withdrawal_batch(ctx, custody.wallet, confirmations=K)
    assert (refused.status, refused.last_error) == ("FAILED", "Insufficient funds")
    assert [r.status for r in withdrawal_requests(ctx, alice)] == ["PENDING"]
    assert balances(ctx, alice) == UserBalances(available=60_000, held=0, inflight=40_000)

    custody.mine(K - 1)
    assert run_withdrawal_batch(ctx, custody.wallet, confirmations=K).status == "BROADCAST"
    custody.mine(K)
    assert [b.status for b in check_batches(ctx, custody.wallet, K)] == ["CONFIRMED"]
    assert balances(ctx, alice) == UserBalances(available=60_000, held=0, inflight=0)
    assert_reconciled(custody)


def test_batch_whose_send_answer_was_lost_is_found_in_the_wallet(custody):
    ctx = custody.ctx
    alice, batch_id, outputs = claimed_batch(custody)
    # bitcoind sent it, but the connection broke before its answer came back
    txid = custody.wallet.send([(address, amount) for _id, address, amount in outputs], minconf=K,
                               subtract_fee_from=[0])["txid"]

    assert [(b.id, b.txid, b.status) for b in check_batches(ctx, custody.wallet, K)] == [(batch_id, txid, "BROADCAST")]
    assert_reconciled(custody)
    custody.mine(K)
    assert [b.status for b in check_batches(ctx, custody.wallet, K)] == ["CONFIRMED"]
    assert balances(ctx, alice) == UserBalances(available=70_000, held=0, inflight=0)
    assert_reconciled(custody)


def test_batch_never_sent_goes_back_to_the_queue(custody):
    ctx = custody.ctx
    alice, batch_id, _outputs = claimed_batch(custody)  # then the process died

    assert check_batches(ctx, custody.wallet, K) == []  # within the grace period: wait
    [given_back] = check_batches(ctx, custody.wallet, K, building_grace_s=0)
    assert (given_back.id, given_back.status) == (batch_id, "FAILED")
    assert [r.status for r in withdrawal_requests(ctx, alice)] == ["PENDING"]
    assert run_withdrawal_batch(ctx, custody.wallet, confirmations=K).status == "BROADCAST"
    assert balances(ctx, alice) == UserBalances(available=70_000, held=0, inflight=30_000)
    assert_reconciled(custody)


def test_batch_left_by_a_dead_worker_goes_back_after_the_restart(custody):
    ctx = custody.ctx
    alice, batch_id, _outputs = claimed_batch(custody)  # then the worker died (torture: after_batch_claim)
    restarted = utcnow()

    # Regression: it waited the whole lost-answer grace (5 min) although its sender was gone.
    assert check_batches(ctx, custody.wallet, K, restarted_at=restarted, orphan_grace_s=3600) == []
    [given_back] = check_batches(ctx, custody.wallet, K, restarted_at=restarted, orphan_grace_s=0)
    assert (given_back.id, given_back.status) == (batch_id, "FAILED")
    assert run_withdrawal_batch(ctx, custody.wallet, confirmations=K).status == "BROADCAST"
    assert balances(ctx, alice) == UserBalances(available=70_000, held=0, inflight=30_000)
    assert_reconciled(custody)


def test_batch_made_in_this_run_is_not_an_orphan(custody):
    ctx = custody.ctx
    started = utcnow()
    claimed_batch(custody)  # its send may still be running: only the long grace applies
    assert check_batches(ctx, custody.wallet, K, restarted_at=started, orphan_grace_s=0) == []


def test_lost_answer_is_not_taken_for_an_earlier_batch_to_the_same_address(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    deposit(custody, [alice], 200_000)
    address = custody.miner.getnewaddress()
    request_onchain_withdrawal(ctx, alice, address, 30_000)
    first = run_withdrawal_batch(ctx, custody.wallet, confirmations=K)
    custody.mine(K)
    assert [b.status for b in check_batches(ctx, custody.wallet, K)] == ["CONFIRMED"]
    request_onchain_withdrawal(ctx, alice, address, 30_000)
    batch_id, _outputs = onchain._claim(ctx, max_outputs=10)  # then the process died

    # Regression: the first batch's transaction (same address set) was taken for this one; its txid
    # is unique, so recording it failed on every pass and the batch stayed BUILDING for good.
    assert check_batches(ctx, custody.wallet, K) == []
    [given_back] = check_batches(ctx, custody.wallet, K, building_grace_s=0)
    assert (given_back.id, given_back.status, given_back.txid) == (batch_id, "FAILED", None)
    second = run_withdrawal_batch(ctx, custody.wallet, confirmations=K)
    assert second.status == "BROADCAST" and second.txid != first.txid
    custody.mine(K)
    check_batches(ctx, custody.wallet, K)
    assert balances(ctx, alice) == UserBalances(available=140_000, held=0, inflight=0)
    assert_reconciled(custody)
