"""A notification reaches an open SSE stream when its commit rings the stream (reference_app/bell.py),
not on the stream's next look. No nodes: the notification is a row written as the services write them."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from sqlalchemy import select

from reference_app.api.routes import notifications as route
from reference_app.bell import Bell
from reference_app.main import create_app
from reference_app.serve import ServedApp
from reference_app.services import outbox
from reference_app.store.db import NOTIFIED_USERS, note_after_commit
from reference_app.store.models import Notification
from regtest_cluster.waiting import wait_for

from .test_accounts import signed_in


def _notify(ctx, user_id: int, *, ring: bool = True) -> None:
    with ctx.db.session() as session:
        session.add(Notification(user_id=user_id, kind="message.new", message="hello"))
        if ring:
            note_after_commit(session, NOTIFIED_USERS, user_id)


def test_a_committed_notification_rings_the_stream_that_waits_for_it(api, monkeypatch):
    """The stream's fallback look is put an hour away: only the bell can end this stream."""
    monkeypatch.setattr(route, "FALLBACK_S", 3600.0)
    ctx = api.app.state.ctx
    headers = signed_in(api)
    user_id = api.get("/me", headers=headers).json()["id"]
    reads = []
    real = outbox.feed_page

    async def counted(*args):
        page = await real(*args)
        reads.append(len(page))
        return page

    monkeypatch.setattr(outbox, "feed_page", counted)
    answer: dict = {}

    def listen() -> None:
        response = api.get("/notifications/stream", headers=headers, params={"max_events": 1})
        answer["response"] = response

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    wait_for(lambda: reads == [0], timeout=30, what="the stream's first (empty) read")
    _notify(ctx, user_id)
    reader.join(60)
    assert not reader.is_alive(), f"the stream was not rung (reads {reads})"
    response = answer["response"]
    assert response.status_code == 200
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert [json.loads(d)["kind"] for d in data] == ["message.new"]
    assert reads == [0, 1] and ctx.bell.rung == 1
    assert ctx.bell._streams == {}  # the ended stream no longer listens


def test_a_rolled_back_notification_rings_nobody(api):
    ctx = api.app.state.ctx
    rung = []
    ctx.db.on_commit[NOTIFIED_USERS] = rung.append
    with pytest.raises(RuntimeError):
        with ctx.db.session() as session:
            session.add(Notification(user_id=1, kind="message.new", message="never"))
            note_after_commit(session, NOTIFIED_USERS, 1)
            raise RuntimeError("the change fails")
    _notify(ctx, 1)
    assert rung == [{1}]


def test_the_bell_rings_only_the_users_streams_from_any_thread_and_forgets_ended_ones():
    bell = Bell()

    async def main() -> list[bool]:
        with bell.listening(7) as mine, bell.listening(8) as other:
            await asyncio.to_thread(bell.ring, [7, 9])
            await asyncio.wait_for(mine.wait(), 30)
            woken = [mine.is_set(), other.is_set()]
        assert bell._streams == {}
        bell.ring([7])  # no stream: nothing to do
        return woken

    assert asyncio.run(main()) == [True, False]
    assert bell.rung == 1


def test_a_ring_is_counted_before_its_stream_can_wake_and_a_closed_loop_s_is_not():
    """A stream woken at once may look at the count (the app's counters, a test) before the
    ringing thread goes on: the ring is counted first. A loop that has closed rings nobody."""
    bell = Bell()

    async def main() -> list[int]:
        loop, seen = asyncio.get_running_loop(), []
        real = loop.call_soon_threadsafe

        def at_once(callback, *args):  # the stream wakes before the ringing thread goes on
            seen.append(bell.rung)
            return real(callback, *args)
        loop.call_soon_threadsafe = at_once
        with bell.listening(7) as mine:
            bell.ring([7])
            await asyncio.wait_for(mine.wait(), 30)
        return seen

    assert asyncio.run(main()) == [1] and bell.rung == 1

    async def closed() -> None:
        loop = asyncio.new_event_loop()
        loop.close()
        with bell.listening(8) as rung:
            entry = next(iter(bell._streams[8]))
            bell._streams[8] = {(loop, entry[1])}  # the stream's loop has gone
            bell.ring([8])
            bell._streams[8] = {entry}  # for listening's own ending
            assert not rung.is_set()
        assert bell._streams == {}

    asyncio.run(closed())
    assert bell.rung == 1


def test_a_feed_page_is_each_notification_as_its_webhook_payload_oldest_first(api):
    ctx = api.app.state.ctx
    user_id = api.get("/me", headers=signed_in(api)).json()["id"]
    for _ in range(3):
        _notify(ctx, user_id)
    with ctx.db.session(write=False) as session:
        rows = session.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.id))
        expected = [outbox.payload(n) for n in rows]
    assert len(expected) == 3
    assert asyncio.run(outbox.feed_page(ctx, user_id, 0)) == expected
    assert asyncio.run(outbox.feed_page(ctx, user_id, expected[1]["id"])) == expected[2:]
    assert asyncio.run(outbox.feed_page(ctx, user_id + 1, 0)) == []


def test_the_server_stops_with_a_stream_open_and_ends_the_stream(settings):
    """uvicorn waits for every open response before it stops, and a stream never ends by itself:
    the app's server (reference_app.serve.Server) ends its streams when it shuts down. Before,
    a stop with a party's stream open hung until the harness killed the app, 20 s later."""
    app = create_app(settings, with_node=False)
    served = ServedApp(app)
    ended: dict = {}
    http = httpx.Client(base_url=served.url, timeout=60)
    try:
        with served:
            headers = signed_in(http)

            def listen() -> None:
                with http.stream("GET", "/notifications/stream", headers=headers) as response:
                    ended["status"] = response.status_code
                    ended["lines"] = list(response.iter_lines())

            reader = threading.Thread(target=listen, daemon=True)
            reader.start()
            wait_for(lambda: app.state.ctx.bell._streams, timeout=30, what="the stream to listen")
        assert not served._thread.is_alive(), "the server did not stop with a stream open"
        reader.join(30)
        assert not reader.is_alive() and ended == {"status": 200, "lines": ["retry: 2000", ""]}
    finally:
        http.close()
        app.state.ctx.db.dispose()
