"""I10 on the paid payout invoice's terms (amount, destination, expiry, final CLTV): pure logic, no nodes."""

from __future__ import annotations

from harness.evidence import Evidence, OrderEvidence
from harness.oracle.base import Context
from harness.oracle.ln_hold import i10_payout_invoice

RULES = {"payout_fee_limit_sats": 50, "payout_min_expiry_s": 600, "payout_max_final_cltv": 432}
PAID_AT = 1_800_000_000


def judged(expiry: int, cltv: int = 80, rules: dict = RULES) -> list[str]:
    """The I10 findings for one seller payout paid ``PAID_AT`` seconds after its invoice was made
    (made 10 s earlier, valid ``expiry`` seconds, final CLTV ``cltv``)."""
    payout = {"beneficiary": "seller", "payment_hash": "ab" * 32, "amount_sats": 9_900, "status": "SUCCEEDED"}
    order = {"seller_id": 2, "buyer_id": 1, "payouts": [payout]}
    pay = {"payment_hash": payout["payment_hash"], "status": "SUCCEEDED", "value_sat": "9900", "fee_sat": "0",
           "creation_time_ns": str(PAID_AT * 10**9)}
    decoded = {"destination": "seller-key", "timestamp": str(PAID_AT - 10), "expiry": str(expiry),
               "cltv_expiry": str(cltv)}
    ev = Evidence(node_pubkeys={"seller1": "seller-key"})
    ev.orders[7] = OrderEvidence(order=order, events=[], invoice=None, payment_request=None, hub_payments=[pay],
                                 payout_invoices={payout["payment_hash"]: decoded}, buyer_payment=None)
    return [v.message for v in i10_payout_invoice(ev, Context(settings=rules, user_nodes={2: "seller1"}))]


def test_a_lasting_invoice_with_a_short_final_cltv_passes():
    assert judged(expiry=3600) == []


def test_an_invoice_paid_with_less_time_left_than_the_rules_ask_is_a_finding():
    found = judged(expiry=120)
    assert len(found) == 1 and "110s left" in found[0]


def test_a_final_cltv_over_the_maximum_is_a_finding():
    found = judged(expiry=3600, cltv=500)
    assert len(found) == 1 and "final CLTV 500" in found[0]


def test_rules_the_marketplace_does_not_report_are_not_judged():
    assert judged(expiry=120, cltv=500, rules={"payout_fee_limit_sats": 50}) == []
