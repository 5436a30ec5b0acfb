"""The harness's webhook receiver: what it keeps and what it refuses, over real loopback HTTP
(no nodes, no marketplace: the POSTs are made here as the protocol says to sign them)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from escrow_protocol.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_courier
from harness.webhooks import WebhookReceiver

SECRET = "s3cret"
INBOX = [{"id": i, "kind": kind, "order_id": 7, "user_id": 1, "message": "", "at": "2026-12-07T00:00:00+00:00"}
         for i, kind in ((3, "order.funded"), (5, "order.shipped"), (8, "order.released"))]


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    r.expect(1, SECRET, after=0)
    yield r
    r.close()


def post(receiver, item: dict, secret: str = SECRET, key: int = 1, event_id: int | None = None,
         body: bytes | None = None) -> int:
    raw = body if body is not None else json.dumps(item, separators=(",", ":")).encode()
    ts = int(time.time())
    return httpx.post(receiver.url(key), content=raw, timeout=5, headers={
        TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_courier(secret, ts, raw),
        EVENT_ID_HEADER: str(item["id"] if event_id is None else event_id)}).status_code


def test_signed_notifications_are_kept_once_each_however_often_they_arrive(receiver):
    assert [post(receiver, n) for n in (*INBOX, INBOX[1])] == [200, 200, 200, 200]
    got = receiver.received(1, INBOX, grace=0)
    assert got.delivered == {3: ("order.funded", 7), 5: ("order.shipped", 7), 8: ("order.released", 7)}
    assert got.refused == {} and got.owed(INBOX) == INBOX


def test_what_cannot_be_verified_is_refused_and_recorded_not_kept(receiver):
    assert post(receiver, INBOX[0], secret="another secret") == 401
    assert post(receiver, INBOX[1], event_id=8) == 400             # the body is another notification
    assert post(receiver, INBOX[2], body=b"not json") == 400
    assert post(receiver, INBOX[0], key=2) == 404                  # nobody's endpoint
    got = receiver.received(1, INBOX, grace=0)
    assert got.delivered == {}
    assert got.refused == {3: "its signature does not verify with the endpoint's secret",
                           8: "its body is notification 5, not the X-Escrowlab-Event-Id it names"}


def test_down_turns_every_post_away_until_it_ends(receiver):
    with receiver.down(1):
        assert post(receiver, INBOX[0]) == 503
        assert receiver.turned_away(1, 1, timeout=0)
        assert not receiver.turned_away(1, 2, timeout=0)
    assert post(receiver, INBOX[0]) == 200
    assert receiver.received(1, INBOX, grace=0).delivered == {3: ("order.funded", 7)}
    with receiver.down(1):  # counted from each time it goes down
        assert not receiver.turned_away(1, 1, timeout=0)


def test_received_waits_for_what_is_owed_and_no_longer_than_the_grace(receiver):
    """A marketplace retries with a backoff: the judgement waits for the owed ids, then stops."""
    receiver.expect(2, SECRET, after=4)  # subscribed after notification 4: 3 is not owed
    later = threading.Timer(0.3, lambda: [post(receiver, n, key=2) for n in INBOX[1:]])
    later.start()
    t0 = time.monotonic()
    got = receiver.received(2, INBOX, grace=20)
    assert set(got.delivered) == {5, 8} and time.monotonic() - t0 < 20  # returned before its grace ended
    t0 = time.monotonic()
    assert receiver.received(1, INBOX, grace=0.3).delivered == {}
    assert time.monotonic() - t0 >= 0.3
