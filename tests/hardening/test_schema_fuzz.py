"""Schema fuzzing: schemathesis generates requests for every operation in the app's
OpenAPI document, sent in-process to the app on the real hub cluster with a valid
bearer token, so the code behind authentication runs too. No response may be a
5xx, and each must be declared: its status, content type, headers and body.

The SSE stream (/notifications/stream) never ends by itself; it is left to the
authorization matrix, which reads it with ``max_events``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

pytestmark = pytest.mark.cluster

MIN_REQUESTS = 1_000
EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
NOT_FUZZED = ("/notifications/stream",)
# Who sends each request: admin paths as the admin; the rest by turns as each role.
ROTATION = ("buyer", "seller", "courier", "arbiter", "admin")
# Operations that revoke the sender's tokens or remove accounts are sent by a buyer, so
# the fuzzer cannot lock out its own admin.
SELF_HARM = ("/me/erase", "/auth/logout-all")

SENT: Counter = Counter()


def served_document() -> dict:
    """The document the app serves, built from its routers alone (no database, no nodes)."""
    from fastapi import FastAPI

    from reference_app.api.openapi import document
    from reference_app.api.routes import ROUTERS

    app = FastAPI(title="escrowlab reference marketplace", version="0.1.0")
    for router in ROUTERS:
        app.include_router(router)
    return document(app)


@pytest.fixture(scope="module")
def fuzz_app(hardened_market, personas):
    """The app on the cluster, with a listing and an open-hold order for the fuzzer to find."""
    seller, buyer = personas["seller"], personas["buyer"]
    listing = seller.list_item("fuzz target", 5_000)
    buyer.buy(listing["id"])
    return hardened_market.http.app


@pytest.fixture(scope="module", autouse=True)
def request_budget(tmp_path_factory):
    """After the module: at least MIN_REQUESTS were sent, over every fuzzed operation."""
    yield
    total = sum(SENT.values())
    report = tmp_path_factory.getbasetemp() / "schema-fuzz.json"
    report.write_text(json.dumps({"requests": total, "by_operation": dict(SENT)}, indent=2))
    print(f"\nschema fuzz: {total} requests over {len(SENT)} operations ({report})")
    if SENT:  # a filtered run (-k) sends fewer; the budget is for the whole module
        assert total >= MIN_REQUESTS or len(SENT) < 10, f"only {total} generated requests (< {MIN_REQUESTS})"


schema = schemathesis.openapi.from_dict(served_document())


def sender(case) -> str:
    path = case.operation.path
    if path.startswith("/admin") or path in ("/disputes",):
        return "admin" if SENT[case.operation.label] % 3 else "arbiter"
    if path in SELF_HARM:
        return "buyer"
    return ROTATION[SENT[case.operation.label] % len(ROTATION)]


def protect_admin(case, personas) -> None:
    """Admin-on-user operations never target the admin account the fuzzer itself uses."""
    params = case.path_parameters or {}
    if params.get("user_id") == personas["admin"].id:
        params["user_id"] = personas["other_buyer"].id


@schema.exclude(path=list(NOT_FUZZED)).parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz_every_operation_conforms(case, fuzz_app, personas):
    protect_admin(case, personas)
    token = personas.token(sender(case))
    SENT[case.operation.label] += 1
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, app=fuzz_app)


def test_fuzz_document_is_the_served_one(fuzz_app):
    served = fuzz_app.openapi()
    assert served["paths"].keys() == served_document()["paths"].keys()
    assert served["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "code", "detail"]


def test_withdraw_invoice_with_control_character_is_422(personas):
    """Regression: the invoice went into the hub's URL path and httpx raised InvalidURL (500)."""
    personas.token("buyer")  # the fuzz may have logged the buyer out, blocked or erased it
    answer = personas["buyer"].attempt("POST", "/wallet/withdrawals/ln",
                                       json={"payment_request": "lnbcrt0000000000000\x1f"})
    assert answer.status_code == 422 and answer.json()["code"] == "validation_failed", answer.text


def test_deposit_beyond_lnd_maximum_is_422(personas):
    """Regression: lnd refuses invoices above 100,000 BTC, and its refusal was a 500."""
    personas.token("buyer")  # the fuzz may have logged the buyer out, blocked or erased it
    answer = personas["buyer"].attempt("POST", "/wallet/deposits/ln", json={"amount_sats": 2_099_999_999_999_999})
    assert answer.status_code == 422 and answer.json()["field"] == "amount_sats", answer.text


def test_order_times_carry_utc_offset(fuzz_app, personas):
    """Regression: SQLite's naive datetimes went out without an offset (not RFC 3339)."""
    from harness.actors import Buyer

    personas.token("seller")
    listing = personas["seller"].list_item("times", 5_000)
    buyer = Buyer.register(personas.market.http, "timed", ["buyer"], address="5 Clock Lane, Springfield")
    order = buyer.order(buyer.buy(listing["id"])["id"])
    for name in ("created_at", "updated_at", "deadline_at"):
        assert order[name].endswith(("+00:00", "Z")), f"{name} = {order[name]}"
