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


def test_a_notification_that_commits_after_a_later_one_still_reaches_the_stream(api):
    ctx = api.app.state.ctx
    user_id = api.get("/me", headers=signed_in(api)).json()["id"]
    written, commit = threading.Event(), threading.Event()

    def slow() -> None:  # notifies first, and has sent a statement, but commits last
        with ctx.db.session() as session:
            outbox.notify(session, (user_id,), "message.new", "first")
            session.execute(select(1))
            written.set()
            commit.wait(30)

    def fast() -> None:
        with ctx.db.session() as session:
            outbox.notify(session, (user_id,), "message.new", "second")

    loop = asyncio.new_event_loop()
    try:
        first = threading.Thread(target=slow)
        first.start()
        assert written.wait(30)
        second = threading.Thread(target=fast)
        second.start()
        second.join(2)  # on SQLite it waits for the first's commit: one writer at a time
        sent = loop.run_until_complete(outbox.feed_page(ctx, user_id, 0))
        cursor = sent[-1]["id"] if sent else 0
        commit.set()
        first.join(30)
        second.join(30)
        sent += loop.run_until_complete(outbox.feed_page(ctx, user_id, cursor))
    finally:
        commit.set()
        loop.close()
    assert sorted(n["message"] for n in sent if n["kind"] == "message.new") == ["first", "second"]


def test_a_transaction_that_has_written_its_notifications_holds_back_the_next_ones_for_that_user(api, monkeypatch):
    """The rows go in at the commit, but between the INSERT and the COMMIT another transaction
    could still take a later id and commit first; on PostgreSQL the user's advisory lock makes
    it wait. Here the first transaction stops right after its INSERT."""
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

    def write(message: str) -> None:
        with ctx.db.session() as session:
            outbox.notify(session, (user_id,), "message.new", message)

    loop = asyncio.new_event_loop()
    try:
        first = threading.Thread(target=write, args=("first",), name="first")
        first.start()
        assert inserted.wait(30)
        second = threading.Thread(target=write, args=("second",), name="second")
        second.start()
        second.join(2)  # waits for the first's commit: for the user's lock, or SQLite's one writer
        assert second.is_alive()
        sent = loop.run_until_complete(outbox.feed_page(ctx, user_id, 0))
        cursor = sent[-1]["id"] if sent else 0
        commit.set()
        first.join(30)
        second.join(30)
        sent += loop.run_until_complete(outbox.feed_page(ctx, user_id, cursor))
    finally:
        commit.set()
        loop.close()
    assert [n["message"] for n in sent if n["kind"] == "message.new"] == ["first", "second"]
