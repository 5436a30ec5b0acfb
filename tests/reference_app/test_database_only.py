"""``@database_only`` endpoints hop no thread where the database cannot make them wait.

On SQLite a write request's session holds the write lock once it has begun, so a listing
update's statements and commit run on the event loop. On PostgreSQL every statement is a
round trip to another process: the endpoint keeps its worker thread. Either way the row is
committed before the response, and an error rolls the write back.

A new listing is an ``async`` endpoint on both: one INSERT committed by itself
(``store.db.Prepared.arows``), awaited on PostgreSQL, in this process's write turn on SQLite."""

from __future__ import annotations

import asyncio
import threading

import pytest

from reference_app.api.routes import listings as listing_routes
from reference_app.services import listings
from tests.reference_app.test_listings import create, make_user


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def where(monkeypatch):
    """Records, for each ``listings.create`` and ``listings.update``, whether it ran on the event loop."""
    seen: list[tuple[str, bool, str]] = []

    async def create(*args, _real=listings.create, **kwargs):
        seen.append(("create", _on_event_loop(), threading.current_thread().name))
        return await _real(*args, **kwargs)

    def update(*args, _real=listings.update, **kwargs):
        seen.append(("update", _on_event_loop(), threading.current_thread().name))
        return _real(*args, **kwargs)
    monkeypatch.setattr(listings, "create", create)
    monkeypatch.setattr(listings, "update", update)
    return seen


def test_a_listing_update_runs_on_the_event_loop_on_sqlite_only(api, where):
    sqlite = api.app.state.ctx.db.single_writer
    _, seller = make_user(api, "seller")
    made = create(api, seller)
    r = api.patch(f"/listings/{made['id']}", headers=seller, json={"stock": 7})
    assert r.status_code == 200, r.text
    assert [(name, loop) for name, loop, _ in where] == [("create", True), ("update", sqlite)], where
    # committed before the response: the next request (another session) finds it
    assert api.get(f"/listings/{made['id']}").json()["stock"] == 7


def test_a_new_listing_is_one_insert_committed_alone_on_both_databases(settings, monkeypatch):
    """No transaction is begun around it (on SQLite no BEGIN IMMEDIATE, on PostgreSQL no pooled
    connection): the session has nothing to commit when the INSERT returns, and the row is there.
    Without the market loop, so that no other writer of the app has SQLite's write turn (then the
    INSERT would rightly begin a transaction in a thread: store/test_statements.py)."""
    from fastapi.testclient import TestClient

    from reference_app.main import create_app
    from reference_app.store.db import WROTE_ALONE

    seen = []

    async def recording(session, *args, _real=listings.create, **kwargs):
        made = await _real(session, *args, **kwargs)
        seen.append((session.info.get(WROTE_ALONE), session.in_transaction()))
        return made
    monkeypatch.setattr(listings, "create", recording)
    app = create_app(settings.model_copy(update={"run_market_loop": False}), with_node=False)
    try:
        with TestClient(app) as api:
            _, seller = make_user(api, "seller")
            made = [create(api, seller) for _ in range(3)]
            assert seen == [(True, False)] * 3
            assert [api.get(f"/listings/{m['id']}").json()["title"] for m in made] == [m["title"] for m in made]
    finally:
        app.state.ctx.db.dispose()


def test_an_error_in_a_database_only_endpoint_rolls_back(api, monkeypatch):
    """The endpoint fails after its UPDATE: nothing is kept, and the next write takes the lock."""
    _, seller = make_user(api, "seller")
    made = create(api, seller)
    real = listings.update

    def fails_after_update(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("boom after the update")
    monkeypatch.setattr(listings, "update", fails_after_update)
    with pytest.raises(RuntimeError, match="boom"):
        api.patch(f"/listings/{made['id']}", headers=seller, json={"stock": 9})
    monkeypatch.setattr(listings, "update", real)
    assert api.get(f"/listings/{made['id']}").json()["stock"] == made["stock"]
    assert create(api, seller)["id"]  # the write lock was given back


def test_only_listing_routes_that_touch_nothing_but_the_database_are_marked():
    marked = {name for name in dir(listing_routes)
              if getattr(getattr(listing_routes, name), "database_only", False)}
    assert marked == {"update_listing", "delete_listing"}
