"""The admin hub on the real cluster: metrics from live orders, transaction monitoring
where a seller sees only their own money, and the CSV export."""

from __future__ import annotations

import csv
import io

import pytest

from tests.reference_app.notifications.conftest import (DEPOSIT, NOT_INITIATED_LOG, PRICE, funded_order,  # noqa: F401
                                                        market, release)

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]
FEE = PRICE * 10_000 // 1_000_000


def csv_rows(party) -> list[dict]:
    response = party.attempt("GET", "/transactions.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_metrics_monitoring_and_export_scope_by_user(market):
    buyer, _account, seller, order = funded_order(market)
    other_buyer, _other, other_seller, open_order = funded_order(market, "buyer2", "seller2", price=30_000)
    other_buyer.call("POST", f"/orders/{open_order['id']}/dispute", json={"reason": "never shipped"}, expect=201)
    release(market, buyer, seller, order, "AD-1001")

    metrics = market.admin.call("GET", "/admin/metrics")
    assert metrics["gmv_sats"] == PRICE and metrics["fees_earned_sats"] == FEE
    assert metrics["orders_by_state"] == {"DISPUTED": 1, "RELEASED": 1}
    assert metrics["locked_sats_by_mode"] == {"custodial": 30_000}
    assert metrics["open_disputes"] == 1
    assert metrics["reconciliation"]["status"] == "ok", metrics["reconciliation"]
    denied = seller.attempt("GET", "/admin/metrics")
    assert (denied.status_code, denied.json()["code"]) == (403, "permission_denied")

    everything = market.admin.call("GET", "/transactions", params={"limit": 500})
    kinds = {t["kind"] for t in everything}
    assert {"escrow_hold", "escrow_release"} <= kinds
    mine = seller.call("GET", "/transactions")
    assert [t["kind"] for t in mine] == ["escrow_release"]
    assert mine[0]["legs"] == [{"account": f"user:{seller.id}:available", "amount_sats": PRICE - FEE}]
    assert other_seller.call("GET", "/transactions") == []            # nothing of theirs has moved yet

    seller_csv = csv_rows(seller)
    assert [(r["account"], int(r["amount_sats"])) for r in seller_csv] == [(f"user:{seller.id}:available",
                                                                             PRICE - FEE)]
    admin_csv = csv_rows(market.admin)
    assert sum(int(r["amount_sats"]) for r in admin_csv) == 0       # double entry: the export balances
    assert {r["account"] for r in admin_csv} >= {f"user:{buyer.id}:held", f"user:{other_buyer.id}:held", "sys:fees"}
