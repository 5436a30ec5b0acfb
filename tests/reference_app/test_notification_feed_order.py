"""The notification stream sends a user's notifications in id order, each page after the last id
it sent (``outbox.feed_page``). On PostgreSQL two transactions may take their ids in one order
and commit in the other; a stream that read the later id first moved past the earlier one, and
never sent it (this test failed so, before ``outbox.notify`` wrote the rows at the commit). No
nodes: the rows are written as the services write them."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import select

from reference_app.services import outbox
from reference_app.store.db import Prepared

from .test_accounts import signed_in


def _write(ctx, user_id: int, message: str) -> None:
    with ctx.db.session() as session:
        outbox.notify(session, (user_id,), "message.new", message)


def _crossed(ctx, user_id: int, first: threading.Thread, ready: threading.Event,
             commit: threading.Event) -> tuple[list[dict], bool]:
    """Start ``first`` and, once it is ``ready`` (begun, not committed), a second writer of one
    notification for the same user. Read the stream's page while the second has committed or
    still waits, then let the first commit and read on after the last id sent: the messages sent,
    and whether the second was still waiting 2 s after it started."""
    loop = asyncio.new_event_loop()
    try:
        first.start()
        assert ready.wait(30)
        second = threading.Thread(target=_write, args=(ctx, user_id, "second"), name="second")
        second.start()
        second.join(2)
        waited = second.is_alive()
        sent = loop.run_until_complete(outbox.feed_page(ctx, user_id, 0))
        cursor = sent[-1]["id"] if sent else 0
        commit.set()
        first.join(30)
        second.join(30)
        sent += loop.run_until_complete(outbox.feed_page(ctx, user_id, cursor))
    finally:
        commit.set()
        loop.close()
    return [n["message"] for n in sent if n["kind"] == "message.new"], waited


def test_a_notification_that_commits_after_a_later_one_still_reaches_the_stream(api):
    ctx = api.app.state.ctx
    user_id = api.get("/me", headers=signed_in(api)).json()["id"]
    begun, commit = threading.Event(), threading.Event()

    def slow() -> None:  # notifies first, and has sent a statement, but commits last
        with ctx.db.session() as session:
            outbox.notify(session, (user_id,), "message.new", "first")
            session.execute(select(1))
            begun.set()
            commit.wait(30)

    sent, _ = _crossed(ctx, user_id, threading.Thread(target=slow), begun, commit)
    assert sorted(sent) == ["first", "second"]


def test_a_transaction_that_has_written_its_notifications_holds_back_the_next_ones_for_that_user(api, monkeypatch):
    """The rows go in at the commit, but between the INSERT and the COMMIT another transaction
    could still take a later id and commit first; on PostgreSQL the user's advisory lock makes
    it wait (SQLite's one writer does too). Here the first transaction stops right after its INSERT."""
    ctx = api.app.state.ctx
    user_id = api.get("/me", headers=signed_in(api)).json()["id"]
    inserted, commit = threading.Event(), threading.Event()
    real = Prepared.insert_many

    def insert_then_wait(self, session, rows):
        real(self, session, rows)
        if threading.current_thread().name == "first":
            inserted.set()
            commit.wait(30)

    monkeypatch.setattr(Prepared, "insert_many", insert_then_wait)
    first = threading.Thread(target=_write, args=(ctx, user_id, "first"), name="first")
    sent, waited = _crossed(ctx, user_id, first, inserted, commit)
    assert waited and sent == ["first", "second"]
