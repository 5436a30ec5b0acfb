"""Escrow moves inside the ledger (I1, I2, I3, I13), no nodes."""

from __future__ import annotations

import pytest

from reference_app.services.custodial import escrow, ledger
from reference_app.services.errors import Conflict, InsufficientFunds, ValidationFailed
from tests.reference_app.custodial.conftest import add_users, balances, seed

PRICE, FEE = 20_000, 200


@pytest.fixture
def trade(ledger_ctx):
    buyer, seller = add_users(ledger_ctx, 2)
    seed(ledger_ctx, buyer, 50_000)
    with ledger_ctx.db.session() as s:
        escrow.hold(s, 7, buyer, PRICE)
    return ledger_ctx, buyer, seller


def test_hold_moves_available_to_held_once(trade):
    ctx, buyer, _seller = trade
    with ctx.db.session() as s:
        assert escrow.hold(s, 7, buyer, PRICE).replayed
    assert balances(ctx, buyer) == ledger.UserBalances(available=30_000, held=PRICE, inflight=0)


def test_hold_more_than_available_is_refused(ledger_ctx):
    buyer, = add_users(ledger_ctx, 1)
    seed(ledger_ctx, buyer, 1_000)
    with ledger_ctx.db.session() as s, pytest.raises(InsufficientFunds):
        escrow.hold(s, 8, buyer, 1_001)


def test_release_pays_seller_price_minus_fee(trade):
    ctx, buyer, seller = trade
    with ctx.db.session() as s:
        escrow.release(s, 7, seller, PRICE, FEE)
    with ctx.db.session() as s:
        assert escrow.release(s, 7, seller, PRICE, FEE).replayed
    assert balances(ctx, buyer) == ledger.UserBalances(available=30_000, held=0, inflight=0)
    assert balances(ctx, seller).available == PRICE - FEE
    with ctx.db.session(write=False) as s:
        assert ledger.balance(s, ledger.FEES) == FEE
        assert ledger.check(s) == []


def test_refund_after_release_conflicts(trade):
    ctx, buyer, seller = trade
    with ctx.db.session() as s:
        escrow.release(s, 7, seller, PRICE, FEE)
    with ctx.db.session() as s, pytest.raises(Conflict, match="order:7:outcome"):
        escrow.refund(s, 7, buyer)
    assert balances(ctx, buyer).available == 30_000


def test_refund_returns_whole_hold(trade):
    ctx, buyer, _seller = trade
    with ctx.db.session() as s:
        escrow.refund(s, 7, buyer)
    assert balances(ctx, buyer) == ledger.UserBalances(available=50_000, held=0, inflight=0)


def test_split_parts_must_add_up_to_hold(trade):
    ctx, buyer, seller = trade
    with ctx.db.session() as s, pytest.raises(ValidationFailed, match="parts add up to 19000, the hold is 20000"):
        escrow.split(s, 7, buyer, 9_000, seller, 10_000, 100)
    with ctx.db.session() as s:
        escrow.split(s, 7, buyer, 10_000, seller, 10_000, 100)
    assert balances(ctx, buyer).available == 40_000
    assert balances(ctx, seller).available == 9_900


def test_release_wrong_amount_is_refused(trade):
    ctx, _buyer, seller = trade
    with ctx.db.session() as s, pytest.raises(ValidationFailed, match="holds 20000 sats, not 25000"):
        escrow.release(s, 7, seller, 25_000, FEE)


def test_release_without_hold_is_refused(ledger_ctx):
    _buyer, seller = add_users(ledger_ctx, 2)
    with ledger_ctx.db.session() as s, pytest.raises(ValidationFailed, match="order 99 has no custodial hold"):
        escrow.release(s, 99, seller, PRICE, FEE)
