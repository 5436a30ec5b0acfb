"""I18, both parties told of every change of state: pure logic, no nodes. Judged over a
whole soak (12,394 orders, a seller told ~37,000 times), so it must not be quadratic."""

from __future__ import annotations

from harness.evidence import Evidence, OrderEvidence
from harness.oracle.base import Context
from harness.oracle.ln_hold import i18_both_told

BUYER, SELLER, STRANGER = 1, 2, 3


def judged(notifications: dict[int, list[dict]]) -> list[str]:
    ev = Evidence(notifications=notifications)
    for oid in (7, 8):
        ev.orders[oid] = OrderEvidence(
            order={"buyer_id": BUYER, "seller_id": SELLER}, invoice=None, payment_request=None, buyer_payment=None,
            hub_payments=[], payout_invoices={},
            events=[{"from_state": "CREATED", "to_state": "FUNDED"}, {"from_state": "FUNDED", "to_state": "FUNDED"}])
    return sorted(v.message + f" (order {v.order_id})" for v in i18_both_told(ev, Context(settings={}, user_nodes={})))


def told(*pairs: tuple[str, int]) -> list[dict]:
    return [{"kind": kind, "order_id": oid} for kind, oid in pairs]


def test_everyone_told_passes():
    both = told(("order.funded", 7), ("order.funded", 8))
    assert judged({BUYER: both, SELLER: both}) == []


def test_a_party_told_of_another_order_or_another_change_is_a_finding():
    assert judged({BUYER: told(("order.funded", 7), ("order.funded", 8)),
                   SELLER: told(("order.funded", 7), ("order.shipped", 8), ("order.funded", 9))}) == [
        "the seller was not told of FUNDED (order 8)"]


def test_users_whose_inbox_was_not_read_are_not_judged():
    assert judged({STRANGER: []}) == []
