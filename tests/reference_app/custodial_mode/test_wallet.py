"""The custodial wallet API on the real cluster: races on one balance (I6), a Lightning
withdrawal held in flight (I14), bad input, and reconciliation through the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from escrowlab.cli import app as escrowlab
from regtest_cluster.state import write_state
from regtest_cluster.waiting import wait_for
from harness.actors_custodial import HeldInvoice, list_custodial
from tests.reference_app.custodial_mode.conftest import K
from tests.reference_app.test_listings import make_user

NOT_INITIATED_LOG = pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated")
# The party cancelling its hold invoice fails the hub's payment; lnd logs that as an error.
HOLD_CANCEL_LOG = pytest.mark.allow_log(r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")
pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]


def assert_reconciled(market) -> dict:
    report = market.reconcile()
    assert report["ok"], report["mismatches"]
    return report["totals"]


def test_concurrent_onchain_withdrawals_of_one_balance_exactly_one_succeeds(market):
    _buyer, account = market.funded_buyer(50_000)
    miner = market.cluster.bitcoind.miner()
    targets = [miner.getnewaddress(), miner.getnewaddress()]
    codes = account.race([lambda: account.withdraw_onchain(targets[0], 50_000, key="race-a"),
                          lambda: account.withdraw_onchain(targets[1], 50_000, key="race-b")])
    assert sorted(codes) == [202, 409]
    account.wait_balance(available_sats=0, inflight_sats=50_000)
    winner = codes.index(202)
    replay = account.withdraw_onchain(targets[winner], 50_000, key=f"race-{'ab'[winner]}")
    assert replay.status_code == 202  # the same key returns the first request, reserving nothing more
    assert [r["id"] for r in account.withdrawals()["onchain"]] == [replay.json()["id"]]
    assert account.wallet()["inflight_sats"] == 50_000

    def broadcast():
        (request,) = account.withdrawals()["onchain"]
        return request if request["status"] == "BROADCAST" else None

    request = wait_for(broadcast, timeout=30, what="the worker to broadcast the batch")
    assert_reconciled(market)  # in between: the batch is in sys:onchain_outgoing
    market.mine(K)
    account.wait_balance(available_sats=0, inflight_sats=0, held_sats=0)
    assert account.withdrawals()["onchain"][0]["status"] == "CONFIRMED"
    assert market.cluster.bitcoind.rpc.call("getrawtransaction", request["txid"], True)["confirmations"] >= K
    assert_reconciled(market)


def test_concurrent_orders_on_one_balance_exactly_one_is_funded(market):
    buyer, account = market.funded_buyer(30_000, "buyer2")
    seller = market.seller("seller2", bind=False)
    listings = [list_custodial(seller, f"one of two {i}", 20_000) for i in range(2)]
    codes = account.race([lambda lid=lst["id"]: buyer.attempt("POST", "/orders", json={"listing_id": lid})
                          for lst in listings])
    assert sorted(codes) == [201, 409]
    assert buyer.call("GET", "/orders")["total"] == 1
    account.wait_balance(available_sats=10_000, held_sats=20_000)
    assert_reconciled(market)


@HOLD_CANCEL_LOG
def test_ln_withdrawal_in_flight_keeps_its_debit_reserved_until_final(market):
    account = market.account(market.buyer("buyer2"))
    invoice = account.deposit_ln(60_000)  # a hub invoice paid from buyer2's node, credited by the worker
    assert market.ctx.hub.lookup_invoice(bytes.fromhex(invoice["payment_hash"]))["state"] == "SETTLED"
    held = HeldInvoice.create(market.cluster.node("buyer2"), 30_000)
    hub = market.ctx.hub
    try:
        answer = account.pay_out(held.payment_request)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["status"], body["fee_limit_sats"]) == ("IN_FLIGHT", 300)
        held.wait_accepted()
        reserved = dict(available_sats=60_000 - 30_300, inflight_sats=30_300)
        account.wait_balance(**reserved)
        for _ in range(3):  # several worker passes re-ask the hub; nothing moves while it says IN_FLIGHT
            market.mine(1)
            assert hub.track_payment(held.payment_hash)["status"] == "IN_FLIGHT"
            account.wait_balance(**reserved)
            assert account.withdrawals()["lightning"][0]["status"] == "IN_FLIGHT"
        assert_reconciled(market)  # reserved while the node says IN_FLIGHT is what reconciliation expects
    finally:
        held.cancel()
    account.wait_balance(available_sats=60_000, inflight_sats=0)
    assert account.withdrawals()["lightning"][0]["status"] == "FAILED"
    assert hub.track_payment(held.payment_hash)["status"] == "FAILED"
    assert_reconciled(market)


@pytest.mark.allow_log(r"DecodePayReq\]: failed converting data to bytes")  # the hub refusing a non-invoice
def test_bad_wallet_input_names_the_field(market):
    buyer, account = market.funded_buyer(20_000)

    def problem(response, status: int, code: str, field: str | None = None) -> None:
        body = response.json()
        assert (response.status_code, body["code"]) == (status, code), body
        if field:
            assert body["field"] == field, body

    problem(buyer.attempt("POST", "/wallet/deposits/ln", json={"amount_sats": 0}), 422, "validation_failed",
            "amount_sats")
    problem(account.withdraw_onchain("bcrt1qnotreallyanaddress0000000000", 15_000), 422, "validation_failed",
            "address")
    problem(account.withdraw_onchain("has spaces in it!", 15_000), 422, "validation_failed", "address")
    problem(account.withdraw_onchain(market.cluster.bitcoind.miner().getnewaddress(), 5_000), 422,
            "validation_failed", "amount_sats")
    problem(account.withdraw_onchain(market.cluster.bitcoind.miner().getnewaddress(), 25_000), 409,
            "insufficient_funds")
    problem(account.pay_out("lnbcrt1notaninvoiceatall"), 422, "validation_failed", "payment_request")
    problem(buyer.attempt("POST", "/wallet/withdrawals/ln", json={"payment_request": "x" * 30, "extra": 1}), 422,
            "validation_failed", "extra")
    problem(market.http.get("/wallet"), 401, "not_authenticated")
    problem(buyer.attempt("GET", "/admin/reconcile"), 403, "permission_denied")
    assert account.wallet()["available_sats"] == 20_000  # nothing was reserved by any of them


def test_wallet_without_bitcoind_is_unavailable(api):
    _user_id, headers = make_user(api, "buyer")
    response = api.get("/wallet", headers=headers)
    assert response.status_code == 503
    assert response.json()["code"] == "node_unavailable"


def test_reconcile_cli_reports_totals_and_no_mismatch(market, tmp_path, monkeypatch):
    buyer, account = market.funded_buyer(40_000)
    seller = market.seller(bind=False)
    order = market.custodial_order(buyer, seller, 10_000)
    seller.ship(order["id"], "fastship", "FS-7001")
    buyer.confirm(order["id"])
    buyer.wait_state(order["id"], "RELEASED")
    state_file = tmp_path / "cluster.json"
    write_state(state_file, market.cluster)
    settings = market.ctx.settings
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ESCROWLAB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ESCROWLAB_ENVIRONMENT", "test")

    result = CliRunner().invoke(escrowlab, ["app", "reconcile", "--state-file", str(state_file), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["mismatches"] == []
    assert (report["totals"]["fees"], report["totals"]["users_available"]) == (100, 40_000 - 100)
    assert report["wallet"] == market.reconcile()["wallet"]
