"""I18 on the real cluster: every escrow state change of a full custodial order notifies
both parties, in the transition's own transaction; the same rows feed the SSE stream and
signed webhooks (retried after failures)."""

from __future__ import annotations

import json

import pytest

from harness.actors_custodial import list_custodial
from tests.reference_app.escrow.conftest import ADDRESSES, open_market, release_holds
from tests.reference_app.notifications.conftest import DEPOSIT, NOT_INITIATED_LOG, PRICE, release

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]


def state_changes(party, order_id: int) -> list[str]:
    events = party.call("GET", f"/orders/{order_id}/events")
    return [f"order.{e['to_state'].lower()}" for e in events if e["to_state"] != e["from_state"]]


def order_notifications(party, order_id: int) -> list[str]:
    items = party.call("GET", "/me/notifications", params={"limit": 200})["items"]
    return [n["kind"] for n in reversed(items) if n["order_id"] == order_id and n["kind"].startswith("order.")]


def sse_events(party, max_events: int, after: int = 0) -> list[dict]:
    response = party.attempt("GET", "/notifications/stream", params={"max_events": max_events},
                             headers={"Last-Event-ID": str(after)})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], **json.loads(fields["data"])})
    return events


def test_every_transition_of_a_full_order_notifies_both_parties(market, receiver):
    buyer, _account = market.funded_buyer(DEPOSIT)
    hook = buyer.call("POST", "/me/webhooks", json={"url": receiver.url(buyer.id)}, expect=201)
    before = buyer.call("GET", "/me/notifications", params={"limit": 1})["items"]  # the deposit's: not owed
    receiver.expect(buyer.id, hook["secret"], after=before[0]["id"] if before else 0)
    seller = market.seller(bind=False)
    with receiver.down(buyer.id):  # the first tries fail: delivered later, retried
        order = buyer.buy(list_custodial(seller, "notified item", PRICE)["id"])
        assert receiver.turned_away(buyer.id, 2, timeout=30)
    final = release(market, buyer, seller, order, "NT-1001")

    changes = state_changes(buyer, final["id"])
    assert changes == ["order.awaiting_funds", "order.funded", "order.shipped", "order.delivered", "order.release_pending",
                       "order.released"]
    assert order_notifications(buyer, final["id"]) == changes
    assert order_notifications(seller, final["id"]) == changes

    streamed = sse_events(buyer, max_events=len(changes))
    assert [e["event"] for e in streamed] == changes
    assert all(e["user_id"] == buyer.id for e in streamed)
    resumed = sse_events(buyer, max_events=1, after=streamed[1]["id"])     # Last-Event-ID resumes after it
    assert resumed[0]["id"] == streamed[2]["id"]

    inbox = buyer.call("GET", "/me/notifications", params={"limit": 200})["items"]
    hooked = receiver.received(buyer.id, inbox, grace=30)  # signed with the secret: the receiver checks
    assert sorted(kind for kind, oid in hooked.delivered.values() if oid == final["id"]) == sorted(changes)
    assert set(hooked.delivered) == {n["id"] for n in hooked.owed(inbox)} and hooked.refused == {}


def test_webhook_registration_rejects_bad_urls(market):
    buyer = market.buyer()
    for url in ("ftp://example.com/x", "not a url at all", "http://"):
        refused = buyer.attempt("POST", "/me/webhooks", json={"url": url})
        assert (refused.status_code, refused.json()["code"]) == (422, "validation_failed"), url
    assert buyer.call("GET", "/me/webhooks") == []
    unauthenticated = market.http.get("/notifications/stream")
    assert (unauthenticated.status_code, unauthenticated.json()["code"]) == (401, "not_authenticated")


def test_every_transition_of_a_hold_invoice_order_notifies_both_parties(cluster, tmp_path):
    with open_market(cluster, tmp_path / "ln") as ln:
        try:
            buyer, seller = ln.buyer(), ln.seller()
            order = ln.funded_order(buyer, seller)
            seller.ship(order["id"], "fastship", "NT-2001")
            ln.courier().deliver("NT-2001", ADDRESSES["buyer1"])
            ln.mine(6)
            final = buyer.wait_state(order["id"], "RELEASED")
            changes = state_changes(buyer, final["id"])
            assert changes == ["order.awaiting_funds", "order.funded", "order.shipped", "order.delivered",
                               "order.release_pending", "order.released"]
            assert order_notifications(buyer, final["id"]) == changes
            assert order_notifications(seller, final["id"]) == changes
        finally:
            release_holds(ln)


def test_every_transition_of_a_disputed_order_notifies_both_parties(market):
    buyer, _account = market.funded_buyer(DEPOSIT)
    seller, arbiter = market.seller(bind=False), market.arbiter()
    order = buyer.buy(list_custodial(seller, "disputed item", PRICE)["id"])
    seller.ship(order["id"], "fastship", "NT-3001")
    buyer.call("POST", f"/orders/{order['id']}/dispute", json={"reason": "broken"}, expect=201)
    arbiter.rule(order["id"], "split", 40)
    buyer.wait_state(order["id"], "SPLIT")
    changes = state_changes(buyer, order["id"])
    assert changes == ["order.awaiting_funds", "order.funded", "order.shipped", "order.disputed",
                       "order.split_pending", "order.split"]
    assert order_notifications(buyer, order["id"]) == changes
    assert order_notifications(seller, order["id"]) == changes
