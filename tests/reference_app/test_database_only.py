"""``@database_only`` endpoints hop no thread where the database cannot make them wait.

On SQLite a write request's session holds the write lock once it has begun, so a listing
write's statements and commit run on the event loop. On PostgreSQL every statement is a
round trip to another process: the endpoint keeps its worker thread. Either way the row is
committed before the response, and an error rolls the write back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from reference_app.api.routes import listings as listing_routes
from reference_app.services import listings
from tests.reference_app.test_listings import create, listing_body, make_user, word


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
    for name in ("create", "update"):
        real = getattr(listings, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, _on_event_loop(), threading.current_thread().name))
            return _real(*args, **kwargs)
        monkeypatch.setattr(listings, name, spy)
    return seen


def test_listing_writes_run_on_the_event_loop_on_sqlite_only(api, where):
    sqlite = api.app.state.ctx.db.single_writer
    _, seller = make_user(api, "seller")
    made = create(api, seller)
    r = api.patch(f"/listings/{made['id']}", headers=seller, json={"stock": 7})
    assert r.status_code == 200, r.text
    assert [(name, loop) for name, loop, _ in where] == [("create", sqlite), ("update", sqlite)], where
    # committed before the response: the next request (another session) finds it
    assert api.get(f"/listings/{made['id']}").json()["stock"] == 7


def test_an_error_in_a_database_only_endpoint_rolls_back(api, monkeypatch):
    """The endpoint fails after its INSERT: nothing is kept, and the next write takes the lock."""
    _, seller = make_user(api, "seller")
    real = listings.create

    def fails_after_insert(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("boom after the insert")
    monkeypatch.setattr(listings, "create", fails_after_insert)
    title = f"{word()} never kept"
    with pytest.raises(RuntimeError, match="boom"):
        api.post("/listings", headers=seller, json=listing_body(title=title))
    monkeypatch.setattr(listings, "create", real)
    assert api.get("/listings", params={"q": title.split()[0]}).json()["total"] == 0
    assert create(api, seller)["id"]  # the write lock was given back


def test_only_listing_routes_that_touch_nothing_but_the_database_are_marked():
    marked = {name for name in dir(listing_routes)
              if getattr(getattr(listing_routes, name), "database_only", False)}
    assert marked == {"create_listing", "update_listing", "delete_listing"}
