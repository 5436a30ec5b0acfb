"""Ledger rules without nodes: double entry, idempotency, floors, races (I1, I6)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from reference_app.services.custodial import ledger, onchain
from reference_app.services.custodial.ledger import FEES, HOT_WALLET, user_account
from reference_app.services.errors import Conflict, InsufficientFunds, ValidationFailed
from tests.reference_app.custodial.conftest import add_users, balances, seed


def test_transfer_entries_sum_to_zero_and_cache_matches(ledger_ctx):
    alice, bob = add_users(ledger_ctx, 2)
    seed(ledger_ctx, alice, 10_000)
    with ledger_ctx.db.session() as s:
        posted = ledger.transfer(s, "t1", "test", [(user_account(alice, "available"), -4_000),
                                                   (user_account(bob, "available"), 3_900), (FEES, 100)])
        assert sum(a for _n, a in posted.legs) == 0
    with ledger_ctx.db.session(write=False) as s:
        assert ledger.check(s) == []
        assert sum(ledger.all_balances(s).values()) == 0
        assert ledger.balance(s, FEES) == 100
        assert ledger.balance(s, HOT_WALLET) == -10_000
    assert balances(ledger_ctx, alice).available == 6_000
    assert balances(ledger_ctx, bob).available == 3_900


def test_transfer_unbalanced_is_refused(ledger_ctx):
    alice, bob = add_users(ledger_ctx, 2)
    with ledger_ctx.db.session() as s, pytest.raises(ValidationFailed, match="sum to zero, these legs sum to 1"):
        ledger.transfer(s, "bad", "test", [(user_account(alice, "available"), -1),
                                           (user_account(bob, "available"), 2)])


def test_transfer_same_key_same_content_returns_first(ledger_ctx):
    alice, bob = add_users(ledger_ctx, 2)
    seed(ledger_ctx, alice, 5_000)
    legs = [(user_account(alice, "available"), -1_000), (user_account(bob, "available"), 1_000)]
    with ledger_ctx.db.session() as s:
        first = ledger.transfer(s, "pay:1", "test", legs)
    with ledger_ctx.db.session() as s:
        again = ledger.transfer(s, "pay:1", "test", list(reversed(legs)))
    assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
    assert balances(ledger_ctx, alice).available == 4_000
    assert balances(ledger_ctx, bob).available == 1_000


def test_transfer_same_key_other_content_conflicts(ledger_ctx):
    alice, bob = add_users(ledger_ctx, 2)
    seed(ledger_ctx, alice, 5_000)
    with ledger_ctx.db.session() as s:
        ledger.transfer(s, "pay:2", "test", [(user_account(alice, "available"), -1_000),
                                             (user_account(bob, "available"), 1_000)])
    with ledger_ctx.db.session() as s, pytest.raises(Conflict, match="'pay:2' was already used"):
        ledger.transfer(s, "pay:2", "test", [(user_account(alice, "available"), -2_000),
                                             (user_account(bob, "available"), 2_000)])
    assert balances(ledger_ctx, alice).available == 4_000


def test_transfer_below_zero_is_refused_and_rolled_back(ledger_ctx):
    alice, bob = add_users(ledger_ctx, 2)
    seed(ledger_ctx, alice, 1_000)
    with pytest.raises(InsufficientFunds) as err:
        with ledger_ctx.db.session() as s:
            ledger.transfer(s, "over", "test", [(user_account(alice, "available"), -1_001),
                                                (user_account(bob, "available"), 1_001)])
    assert err.value.message == f"account user:{alice}:available has 1000 sats; test needs 1001"
    assert err.value.extra == {"account": f"user:{alice}:available", "balance_sats": 1000, "needed_sats": 1001}
    assert balances(ledger_ctx, alice).available == 1_000
    assert balances(ledger_ctx, bob).available == 0
    with ledger_ctx.db.session(write=False) as s:
        assert ledger.find(s, "over") is None


def test_fees_account_cannot_go_negative(ledger_ctx):
    (alice,) = add_users(ledger_ctx, 1)
    with ledger_ctx.db.session() as s, pytest.raises(InsufficientFunds, match="account sys:fees has 0 sats"):
        ledger.transfer(s, "fee-spend", "test", [(FEES, -5), (user_account(alice, "available"), 5)])


def test_concurrent_withdrawals_of_whole_balance_exactly_one_succeeds(ledger_ctx):
    (alice,) = add_users(ledger_ctx, 1)
    seed(ledger_ctx, alice, 50_000)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def withdraw(i: int) -> None:
        start.wait()
        try:
            onchain.request_onchain_withdrawal(ledger_ctx, alice, f"bcrt1qexample{i}", 50_000, key=f"k{i}")
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("insufficient")

    threads = [threading.Thread(target=withdraw, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["insufficient"] * 7 + ["ok"]
    assert balances(ledger_ctx, alice) == ledger.UserBalances(available=0, held=0, inflight=50_000)
    with ledger_ctx.db.session(write=False) as s:
        assert ledger.check(s) == []


def test_concurrent_transfers_same_key_post_once(ledger_ctx):
    alice, bob = add_users(ledger_ctx, 2)
    seed(ledger_ctx, alice, 10_000)
    start = threading.Barrier(6)
    results = []

    def pay() -> None:
        start.wait()
        with ledger_ctx.db.session() as s:
            results.append(ledger.transfer(s, "same-key", "test", [(user_account(alice, "available"), -3_000),
                                                                   (user_account(bob, "available"), 3_000)]))

    threads = [threading.Thread(target=pay) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.replayed for r in results) == [False] + [True] * 5
    assert len({r.id for r in results}) == 1
    assert balances(ledger_ctx, bob).available == 3_000


def test_onchain_request_same_key_is_idempotent(ledger_ctx):
    (alice,) = add_users(ledger_ctx, 1)
    seed(ledger_ctx, alice, 30_000)
    first = onchain.request_onchain_withdrawal(ledger_ctx, alice, "bcrt1qexample", 20_000, key="w1")
    again = onchain.request_onchain_withdrawal(ledger_ctx, alice, "bcrt1qexample", 20_000, key="w1")
    assert again == first
    with pytest.raises(Conflict, match="'w1' was used for another withdrawal"):
        onchain.request_onchain_withdrawal(ledger_ctx, alice, "bcrt1qexample", 25_000, key="w1")
    assert balances(ledger_ctx, alice) == ledger.UserBalances(available=10_000, held=0, inflight=20_000)


def test_check_reports_tampered_cache(ledger_ctx):
    (alice,) = add_users(ledger_ctx, 1)
    seed(ledger_ctx, alice, 7_000)
    with ledger_ctx.db.session() as s:
        s.execute(text("UPDATE custody_accounts SET balance = balance + 500 WHERE name = :n"),
                  {"n": user_account(alice, "available")})
    with ledger_ctx.db.session(write=False) as s:
        assert ledger.check(s) == [ledger.Mismatch(user_account(alice, "available"), 7_000, 7_500,
                                                   "cached balance differs from its entries")]
