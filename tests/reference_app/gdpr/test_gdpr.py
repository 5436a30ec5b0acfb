"""GDPR on the real cluster: export, erasure refused while an escrow is open (with the
reason, changing nothing), and an erasure that anonymises the user while the ledger,
the order and custodial reconciliation stay intact."""

from __future__ import annotations

import pytest

from tests.reference_app.notifications.conftest import (NOT_INITIATED_LOG, PRICE, funded_order, market,  # noqa: F401
                                                        release)

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]


def test_erasure_refused_with_open_escrow_then_anonymises_and_ledger_reconciles(market):
    buyer, _account, seller, order = funded_order(market)
    buyer.call("POST", f"/orders/{order['id']}/messages", json={"body": "Please ring twice"}, expect=201)
    exported = buyer.call("GET", "/me/export")
    assert exported["profile"]["email"] == buyer.email
    assert exported["profile"]["address"].startswith("1 Main Street")
    assert [o["id"] for o in exported["orders"]] == [order["id"]]
    assert exported["messages"][0]["body"] == "Please ring twice"

    refused = buyer.attempt("POST", "/me/erase")
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "erasure_refused"
    assert f"order {order['id']} is FUNDED" in body["detail"] and body["open"] == [f"order {order['id']} is FUNDED"]
    by_admin = market.admin.attempt("POST", f"/admin/users/{seller.id}/erase")
    assert (by_admin.status_code, by_admin.json()["code"]) == (409, "erasure_refused")
    assert buyer.call("GET", "/me/export") == exported                 # nothing changed
    assert buyer.call("GET", "/me")["email"] == buyer.email

    release(market, buyer, seller, order, "GD-1001")
    ledger_before = market.ledger()
    erased = market.admin.call("POST", f"/admin/users/{buyer.id}/erase")
    assert erased["erased"]
    assert erased["retained_balance_sats"] == ledger_before["accounts"][f"user:{buyer.id}:available"]

    assert buyer.attempt("GET", "/me").json()["code"] in ("not_authenticated", "permission_denied")
    gone = buyer.attempt("POST", "/auth/login", json={"email": buyer.email, "password": buyer.password})
    assert gone.status_code == 401
    users = market.admin.call("GET", "/admin/users", params={"limit": 200})["items"]
    row = next(u for u in users if u["id"] == buyer.id)
    assert (row["email"], row["display_name"], row["has_address"], row["blocked"]) == (
        f"erased-{buyer.id}@erased.invalid", "erased user", False, True)
    assert [m["body"] for m in seller.call("GET", f"/orders/{order['id']}/messages")] == ["[erased]"]
    kept = seller.order(order["id"])
    assert (kept["state"], kept["buyer_id"], kept["price_sats"]) == ("RELEASED", buyer.id, PRICE)
    assert market.ledger()["accounts"] == ledger_before["accounts"]
    assert market.ledger()["orders"] == ledger_before["orders"]
    report = market.reconcile()
    assert report["ok"], report["mismatches"]
    again = market.admin.attempt("POST", f"/admin/users/{buyer.id}/erase")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
