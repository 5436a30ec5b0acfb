"""I18, both parties told of every change of state: pure logic, no nodes. Judged over a
whole soak (12,394 orders, a seller told ~37,000 times), so it must not be quadratic."""

from __future__ import annotations

from harness.driver import Streamed
from harness.evidence import Evidence, OrderEvidence
from harness.oracle.base import Context
from harness.oracle.registry import exercised
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


def streamed_judged(inbox: list[dict], after: int, sent: list[int], upto: int | None = None,
                    channel: str = "streamed", refused: dict[int, str] | None = None,
                    told_as: dict[int, tuple[str, int]] | None = None) -> list[str]:
    """I18's findings for the buyer's stream (or, ``channel="hooked"``, webhook) that sent the
    ``sent`` notifications of ``inbox`` as the inbox has them (or as ``told_as`` says)."""
    ev = Evidence(notifications={BUYER: inbox})
    ev.orders[7] = OrderEvidence(order={"buyer_id": BUYER, "seller_id": SELLER}, invoice=None, payment_request=None,
                                 buyer_payment=None, hub_payments=[], payout_invoices={}, events=[])
    delivered = {n["id"]: (n["kind"], n["order_id"]) for n in inbox if n["id"] in sent}
    getattr(ev, channel)[BUYER] = Streamed(after, {**delivered, **(told_as or {})}, upto, refused or {})
    return [v.message for v in i18_both_told(ev, Context(settings={}, user_nodes={}))]


INBOX = [{"id": i, "kind": kind, "order_id": 7}
         for i, kind in ((3, "order.funded"), (5, "order.shipped"), (8, "order.released"))]


def test_a_stream_that_sent_all_its_inbox_from_its_start_passes():
    assert streamed_judged(INBOX, after=0, sent=[3, 5, 8]) == []
    assert streamed_judged(INBOX, after=4, sent=[5, 8]) == []  # opened after the first: not its to send


def test_a_stream_that_skipped_a_notification_its_inbox_has_is_a_finding():
    """As the PostgreSQL stream did (ids taken in one order, committed in the other), or a stream
    that resumes at the newest notification instead of after Last-Event-ID."""
    assert streamed_judged(INBOX, after=0, sent=[3, 8]) == [
        "the buyer's notification stream never sent notification 5 (order.shipped), which their inbox has, "
        "though it sent later ones (up to 8): it skipped it"]


def test_a_stream_that_never_caught_up_with_the_inbox_is_a_finding():
    assert streamed_judged(INBOX, after=0, sent=[3, 5]) == [
        "the buyer's notification stream never sent notification 8 (order.released), which their inbox has, "
        "in the seconds the harness waited for it after reading the inbox"]


def test_a_stream_closed_before_the_judgement_owes_only_what_its_inbox_showed_as_it_closed():
    """A load run's streams close as its users stop; the drain then notifies them of the orders
    it ends. What came after ``upto`` is not the closed stream's to send; what came before is."""
    assert streamed_judged(INBOX, after=0, sent=[3, 5], upto=5) == []
    assert streamed_judged(INBOX, after=0, sent=[3], upto=5) == [
        "the buyer's notification stream never sent notification 5 (order.shipped), which their inbox has, "
        "in the seconds the harness waited for it after reading the inbox"]
    assert Streamed(0, {}, upto=5).owed(INBOX) == INBOX[:2]


def test_the_notifications_judged_against_a_stream_count_as_i18_exercised():
    ev = Evidence(notifications={BUYER: INBOX, SELLER: INBOX})
    assert exercised(ev, Context(settings={}, user_nodes={}))["I18"] == 0  # no change, no stream
    ev.streamed[BUYER] = Streamed(4, {5: ("order.shipped", 7), 8: ("order.released", 7)})
    assert exercised(ev, Context(settings={}, user_nodes={}))["I18"] == 2  # the buyer's two after its start


def test_a_pushed_notification_told_as_something_else_is_a_finding():
    assert streamed_judged(INBOX, after=0, sent=[3, 5, 8], told_as={5: ("order.released", 7)}) == [
        "the buyer's notification stream sent notification 5 as order.released of order 7; their inbox has it "
        "as order.shipped of order 7"]


def test_a_webhook_is_judged_as_a_stream_is():
    """What arrived at the buyer's webhook, signed, against their inbox: a notification given up
    after the endpoint was down, or signed so that no receiver can verify it, is a finding."""
    assert streamed_judged(INBOX, after=0, sent=[3, 5, 8], channel="hooked") == []
    assert streamed_judged(INBOX, after=0, sent=[3, 8], channel="hooked") == [
        "the buyer's webhook never sent notification 5 (order.shipped), which their inbox has, "
        "though it sent later ones (up to 8): it gave it up or never sent it"]
    bad = "its signature does not verify with the endpoint's secret"
    assert streamed_judged(INBOX, after=0, sent=[3, 5], channel="hooked", refused={8: bad}) == [
        "the buyer's webhook never sent notification 8 (order.released), which their inbox has, "
        f"it sent it only in a form the receiver had to refuse: {bad}"]
    ev = Evidence(notifications={BUYER: INBOX})
    ev.hooked[BUYER] = Streamed(0, {})
    assert exercised(ev, Context(settings={}, user_nodes={}))["I18"] == 3
