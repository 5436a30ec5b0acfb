"""Lightning deposits and withdrawals through the hub, on the real cluster (I3, I6, I14)."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from reference_app.services.custodial import (ln_deposit_invoice, ln_withdraw, ln_withdrawals, poll_ln_deposits,
                                              reconcile, resume_withdrawals)
from reference_app.services.custodial.ln_deposits import credit_ln_deposit
from reference_app.services.custodial.ln_withdrawals import fee_reserve, withdrawal
from reference_app.services.custodial.ledger import UserBalances
from reference_app.services.errors import Conflict, InsufficientFunds, ValidationFailed
from regtest_cluster.nodes.lnd import unb64
from regtest_cluster.waiting import wait_for
from tests.reference_app.custodial.conftest import add_users, balances, reopen

# Before reserving, a withdrawal asks the hub whether it ever paid this hash (F34: an
# invoice paid earlier by another part of the marketplace must not be charged again);
# lnd logs the "not yet" answer as an error.
NOT_INITIATED_LOG = pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated")
pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]
# buyer1 cancelling its own hold invoice fails the hub's payment; the hub's lnd logs that as an error.
HOLD_CANCEL_LOG = pytest.mark.allow_log(r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")


def fund_over_ln(custody, user_id: int, amount: int) -> None:
    invoice = ln_deposit_invoice(custody.ctx, user_id, amount)
    assert custody.node("buyer1").send_payment(invoice.payment_request)["status"] == "SUCCEEDED"
    assert credit_ln_deposit(custody.ctx, invoice.payment_hash).state == "CREDITED"


def assert_reconciled(custody) -> dict:
    report = reconcile(custody.ctx, custody.wallet)
    assert report.ok, report.describe()
    return report.totals


def test_ln_deposit_via_hub_invoice_credits_once(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    invoice = ln_deposit_invoice(ctx, alice, 50_000)
    assert poll_ln_deposits(ctx) == []  # open and unpaid

    payment = custody.node("buyer1").send_payment(invoice.payment_request)
    assert payment["status"] == "SUCCEEDED"
    assert [(v.state, v.credited_sats) for v in poll_ln_deposits(ctx)] == [("CREDITED", 50_000)]
    assert poll_ln_deposits(ctx) == []
    assert credit_ln_deposit(ctx, invoice.payment_hash).credited_sats == 50_000
    assert balances(ctx, alice) == UserBalances(available=50_000, held=0, inflight=0)
    assert assert_reconciled(custody)["hub_ln"] == 50_000


def test_ln_withdraw_debits_amount_plus_fee_and_returns_unused_reserve(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    fund_over_ln(custody, alice, 100_000)
    invoice = custody.node("buyer2").addinvoice(30_000, memo="withdrawal")

    done = ln_withdraw(ctx, alice, invoice["payment_request"])
    node = custody.node("hub").track_payment(bytes.fromhex(done.payment_hash))
    assert (done.status, node["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert done.fee_limit_sats == fee_reserve(30_000) == 300
    assert done.fee_sats == -(-int(node["fee_msat"]) // 1000) <= done.fee_limit_sats
    assert balances(ctx, alice) == UserBalances(available=100_000 - 30_000 - done.fee_sats, held=0, inflight=0)
    assert custody.node("buyer2").lookup_invoice(bytes.fromhex(done.payment_hash))["state"] == "SETTLED"

    assert ln_withdraw(ctx, alice, invoice["payment_request"]) == done  # idempotent by payment hash
    assert balances(ctx, alice).available == 100_000 - 30_000 - done.fee_sats
    assert assert_reconciled(custody)["hub_ln"] == 100_000 - 30_000 - done.fee_sats


def test_ln_withdraw_beyond_balance_sends_nothing(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    fund_over_ln(custody, alice, 5_000)
    invoice = custody.node("buyer2").addinvoice(5_000, memo="too much with the fee reserve")
    with pytest.raises(InsufficientFunds, match=f"account user:{alice}:available has 5000 sats; "
                                                f"ln_withdraw_reserve needs 5050"):
        ln_withdraw(ctx, alice, invoice["payment_request"])
    assert custody.node("buyer2").lookup_invoice(unb64(invoice["r_hash"]))["state"] == "OPEN"
    assert balances(ctx, alice) == UserBalances(available=5_000, held=0, inflight=0)


def test_ln_withdraw_zero_amount_invoice_is_refused(custody):
    (alice,) = add_users(custody.ctx, 1)
    request = custody.node("buyer2").addinvoice(0, memo="any amount")["payment_request"]
    with pytest.raises(ValidationFailed, match="zero-amount invoices are not accepted") as err:
        ln_withdraw(custody.ctx, alice, request)
    assert err.value.extra == {"field": "payment_request"}


def _hold_invoice(custody, amount: int) -> tuple[bytes, bytes, str]:
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    request = custody.node("buyer1").add_hold_invoice(payment_hash, amount, cltv_expiry=40)["payment_request"]
    return preimage, payment_hash, request


def _in_flight(custody, alice: int, amount: int):
    """alice pays buyer1's hold invoice: the HTLC is accepted and held there."""
    preimage, payment_hash, request = _hold_invoice(custody, amount)
    try:
        pending = ln_withdraw(custody.ctx, alice, request, wait_s=1)
        assert pending.status == "IN_FLIGHT"
        wait_for(lambda: custody.node("buyer1").lookup_invoice(payment_hash)["state"] == "ACCEPTED",
                 timeout=30, what="buyer1 holds the HTLC")
    except BaseException:
        custody.node("buyer1").cancel_invoice(payment_hash)  # leave no HTLC held in the shared cluster
        raise
    return preimage, payment_hash, pending


def _resume_until(ctx, payment_hash: bytes, status: str):
    def final():
        resume_withdrawals(ctx)
        view = withdrawal(ctx, payment_hash.hex())
        return view if view.status == status else None

    return wait_for(final, timeout=30, what=f"withdrawal {status}")


@HOLD_CANCEL_LOG
def test_ln_withdraw_in_flight_stays_reserved_until_hold_cancelled(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    fund_over_ln(custody, alice, 100_000)
    _preimage, payment_hash, pending = _in_flight(custody, alice, 20_000)
    try:
        reserved = 20_000 + pending.fee_limit_sats
        assert balances(ctx, alice) == UserBalances(available=100_000 - reserved, held=0, inflight=reserved)

        restarted = reopen(ctx)  # a new process: only the database remembers the payment
        assert [v.status for v in resume_withdrawals(restarted)] == ["IN_FLIGHT"]
        assert balances(restarted, alice) == UserBalances(available=100_000 - reserved, held=0, inflight=reserved)
        assert_reconciled(custody)
    finally:
        custody.node("buyer1").cancel_invoice(payment_hash)

    failed = _resume_until(restarted, payment_hash, "FAILED")
    assert failed.fee_sats == 0
    assert balances(ctx, alice) == UserBalances(available=100_000, held=0, inflight=0)
    assert assert_reconciled(custody)["hub_ln"] == 100_000
    restarted.db.dispose()


def test_ln_withdraw_in_flight_settles_when_hold_settled(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    fund_over_ln(custody, alice, 100_000)
    preimage, payment_hash, pending = _in_flight(custody, alice, 20_000)
    try:
        assert resume_withdrawals(ctx)[0].status == "IN_FLIGHT"
        custody.node("buyer1").settle_invoice(preimage)
    except BaseException:
        custody.node("buyer1").cancel_invoice(payment_hash)
        raise

    done = _resume_until(ctx, payment_hash, "SUCCEEDED")
    assert balances(ctx, alice) == UserBalances(available=100_000 - 20_000 - done.fee_sats, held=0, inflight=0)
    assert assert_reconciled(custody)["hub_ln"] == 100_000 - 20_000 - done.fee_sats


def test_ln_withdraw_reserved_but_never_sent_is_sent_by_resume(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    fund_over_ln(custody, alice, 40_000)
    request = custody.node("buyer2").addinvoice(10_000, memo="after a crash")["payment_request"]
    payment_hash = custody.node("hub").decodepayreq(request)["payment_hash"]
    # The process dies right after the reservation commits, before anything reaches the hub.
    ln_withdrawals._reserve(ctx, alice, request, payment_hash, 10_000, fee_reserve(10_000), internal=False)
    assert withdrawal(ctx, payment_hash).status == "RESERVED"
    assert balances(ctx, alice).inflight == 10_000 + fee_reserve(10_000)

    restarted = reopen(ctx)
    done = _resume_until(restarted, bytes.fromhex(payment_hash), "SUCCEEDED")
    assert balances(ctx, alice) == UserBalances(available=30_000 - done.fee_sats, held=0, inflight=0)
    assert_reconciled(custody)
    restarted.db.dispose()


def test_ln_self_payment_nets_zero(custody):
    ctx = custody.ctx
    (alice,) = add_users(ctx, 1)
    fund_over_ln(custody, alice, 50_000)
    own = ln_deposit_invoice(ctx, alice, 10_000)

    paid = ln_withdraw(ctx, alice, own.payment_request)
    assert (paid.internal, paid.status, paid.fee_sats) == (True, "SUCCEEDED", 0)
    assert balances(ctx, alice) == UserBalances(available=50_000, held=0, inflight=0)
    # cancelled on the hub, so nobody can pay it from outside as well
    assert custody.node("hub").lookup_invoice(bytes.fromhex(own.payment_hash))["state"] == "CANCELED"
    assert poll_ln_deposits(ctx) == []
    assert assert_reconciled(custody)["hub_ln"] == 50_000


def test_ln_internal_payment_without_funds_leaves_invoice_payable(custody):
    ctx = custody.ctx
    alice, bob = add_users(ctx, 2)
    invoice = ln_deposit_invoice(ctx, alice, 10_000)
    with pytest.raises(InsufficientFunds, match=f"account user:{bob}:available has 0 sats"):
        ln_withdraw(ctx, bob, invoice.payment_request)
    assert custody.node("buyer1").send_payment(invoice.payment_request)["status"] == "SUCCEEDED"
    assert [v.state for v in poll_ln_deposits(ctx)] == ["CREDITED"]
    assert balances(ctx, alice).available == 10_000


def _race(fn, *args_per_thread) -> list:
    start = threading.Barrier(len(args_per_thread))
    outcomes: list = [None] * len(args_per_thread)

    def run(i: int, args) -> None:
        start.wait()
        try:
            outcomes[i] = fn(*args)
        except (Conflict, ValidationFailed) as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_ln_same_invoice_from_two_accounts_debits_once(custody):
    ctx = custody.ctx
    alice, bob, carol = add_users(ctx, 3)
    fund_over_ln(custody, bob, 40_000)
    fund_over_ln(custody, carol, 40_000)

    internal = ln_deposit_invoice(ctx, alice, 10_000)
    outcomes = _race(ln_withdraw, (ctx, bob, internal.payment_request), (ctx, carol, internal.payment_request))
    paid = [o for o in outcomes if not isinstance(o, Exception)]
    assert [p.status for p in paid] == ["SUCCEEDED"], outcomes
    assert balances(ctx, alice).available == 10_000
    assert balances(ctx, bob).available + balances(ctx, carol).available == 70_000

    external = custody.node("buyer2").addinvoice(5_000, memo="paid once")["payment_request"]
    outcomes = _race(ln_withdraw, (ctx, bob, external), (ctx, carol, external))
    paid = [o for o in outcomes if not isinstance(o, Exception)]
    assert [p.status for p in paid] == ["SUCCEEDED"], outcomes
    assert balances(ctx, bob).total + balances(ctx, carol).total == 70_000 - 5_000 - paid[0].fee_sats
    assert assert_reconciled(custody)["hub_ln"] == 80_000 - 5_000 - paid[0].fee_sats
