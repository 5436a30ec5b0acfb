"""Reconciliation after every kind of flow, and what it reports when a row is tampered with."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from reference_app.services.custodial import (check_batches, deposit_address, escrow, ln_deposit_invoice,
                                              ln_withdraw, poll_ln_deposits, reconcile, request_onchain_withdrawal,
                                              run_withdrawal_batch, scan_deposits)
from reference_app.services.custodial.ledger import FEES, HOT_WALLET, user_account
from tests.reference_app.custodial.conftest import add_users, balances

pytestmark = [pytest.mark.cluster,
              pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated")]  # see test_lightning
K = 3


def test_reconcile_after_all_flows_then_tampering(custody):
    ctx = custody.ctx
    buyer, seller = add_users(ctx, 2)
    # on-chain and LN deposits
    custody.miner.sendtoaddress(deposit_address(ctx, custody.wallet, buyer), 300_000)
    custody.mine(K)
    assert [d.status for d in scan_deposits(ctx, custody.wallet, K)] == ["CREDITED"]
    invoice = ln_deposit_invoice(ctx, seller, 80_000)
    assert custody.node("buyer1").send_payment(invoice.payment_request)["status"] == "SUCCEEDED"
    assert [v.state for v in poll_ln_deposits(ctx)] == ["CREDITED"]
    # an order paid from the buyer's balance, released to the seller
    with ctx.db.session() as s:
        escrow.hold(s, 1, buyer, 100_000)
    with ctx.db.session() as s:
        escrow.release(s, 1, seller, 100_000, 1_000)
    # the seller withdraws over LN, the buyer on-chain
    request = custody.node("buyer2").addinvoice(50_000)["payment_request"]
    ln_out = ln_withdraw(ctx, seller, request)
    assert ln_out.status == "SUCCEEDED"
    request_onchain_withdrawal(ctx, buyer, custody.miner.getnewaddress(), 150_000)
    assert run_withdrawal_batch(ctx, custody.wallet, confirmations=K).status == "BROADCAST"
    in_between = reconcile(ctx, custody.wallet)
    assert in_between.ok, in_between.describe()
    custody.mine(K)
    assert [b.status for b in check_batches(ctx, custody.wallet, K)] == ["CONFIRMED"]

    report = reconcile(ctx, custody.wallet)
    assert report.ok, report.describe()
    seller_left = 80_000 + 99_000 - 50_000 - ln_out.fee_sats
    assert {k: report.totals[k] for k in ("users_available", "users_held", "users_inflight", "fees", "hot_wallet",
                                          "onchain_outgoing", "hub_ln")} == {
        "users_available": 50_000 + seller_left, "users_held": 0, "users_inflight": 0, "fees": 1_000,
        "hot_wallet": 150_000, "onchain_outgoing": 0, "hub_ln": 80_000 - 50_000 - ln_out.fee_sats}
    assert balances(ctx, seller).available == seller_left

    with ctx.db.session() as s:  # someone edits a balance by hand
        s.execute(text("UPDATE custody_accounts SET balance = balance + 1000 WHERE name = :n"),
                  {"n": user_account(buyer, "available")})
    tampered = reconcile(ctx, custody.wallet)
    assert [(m.account, m.expected, m.actual) for m in tampered.mismatches] == [
        (user_account(buyer, "available"), 50_000, 51_000),
        ("ledger:total", 150_000 + 80_000 - 50_000 - ln_out.fee_sats, 1_000 + 50_000 + seller_left + 1_000)]

    with ctx.db.session() as s:  # ... and a hot-wallet figure that the node contradicts
        s.execute(text("UPDATE custody_accounts SET balance = balance - 2000 WHERE name = :n"), {"n": HOT_WALLET})
    accounts = {m.account: (m.expected, m.actual) for m in reconcile(ctx, custody.wallet).mismatches}
    assert accounts[HOT_WALLET] == (150_000, 152_000)
    assert FEES not in accounts
