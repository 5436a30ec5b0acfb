"""Every route's database session ends before its response is sent.

FastAPI ends a yield dependency after the response by default. For the request's
session that would commit after the client was told the outcome: a 201 whose row the
next request cannot find yet, or a success whose commit then failed. Found on
PostgreSQL, where a listing created with 201 was "not found" by the next request."""

from __future__ import annotations

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from reference_app.api.deps import get_session
from reference_app.api.routing import Route
from reference_app.api.routes import ROUTERS


def uses_session(dependant: Dependant) -> bool:
    return any(sub.call is get_session or uses_session(sub) for sub in dependant.dependencies)


def test_session_dependency_ends_before_response_on_every_route():
    """routing.Route ends the request's session; a route of another class would leave it open."""
    found = [(f"{','.join(sorted(route.methods))} {route.path}", isinstance(route, Route))
             for router in ROUTERS for route in router.routes
             if isinstance(route, APIRoute) and uses_session(route.dependant)]
    assert len(found) > 20, "expected most routes to use the request's session"
    late = sorted(path for path, ended in found if not ended)
    assert not late, f"these routes would never end their session (use api.routing.Route): {late}"


def test_a_route_of_another_class_is_refused_the_session(settings):
    """The session is no yield dependency, so only Route ends it: elsewhere it is refused,
    with the reason, instead of left open."""
    from fastapi import APIRouter, Depends, FastAPI
    from fastapi.testclient import TestClient

    from reference_app.api.deps import DbSession
    from reference_app.api.routing import Route
    from reference_app.store.db import REQUEST_SESSIONS, Database

    app = FastAPI()
    app.state.ctx = type("Ctx", (), {"db": Database(settings.database_url), "settings": settings})()
    plain, routed = APIRouter(), APIRouter(route_class=Route)

    @plain.get("/plain")
    async def plain_read(session=DbSession) -> dict:
        return {"one": session.connection().exec_driver_sql("SELECT 1").scalar()}

    @routed.get("/routed")
    async def routed_read(session=DbSession) -> dict:
        return {"one": session.connection().exec_driver_sql("SELECT 1").scalar()}

    async def fails_after(session=DbSession) -> None:
        raise LookupError("a later dependency failed")

    @routed.get("/later", dependencies=[Depends(fails_after)])
    async def never_reached(session=DbSession) -> dict:
        return {}

    @routed.post("/write")
    def write_then_fail(session=DbSession) -> dict:
        session.connection().exec_driver_sql("CREATE TABLE IF NOT EXISTS scratch (x INTEGER)")
        session.connection().exec_driver_sql("INSERT INTO scratch VALUES (1)")
        raise LookupError("the endpoint failed after a write")

    app.include_router(plain)
    app.include_router(routed)
    try:
        client = TestClient(app, raise_server_exceptions=True)
        assert client.get("/routed").json() == {"one": 1}
        with pytest.raises(RuntimeError, match="api.routing.Route"):
            client.get("/plain")
        for _ in range(3):  # each session ended and gave back its slot, and a writer its queue
            with pytest.raises(LookupError):
                client.get("/later")
            assert app.state.session_slots.value == REQUEST_SESSIONS
            with pytest.raises(LookupError):
                client.post("/write")
            assert app.state.session_slots.value == REQUEST_SESSIONS
            gate = getattr(app.state, "sqlite_writer_gate", None)
            assert gate is None or not gate.locked()
        with app.state.ctx.db.session(write=False) as session:  # the failed writes were rolled back
            assert session.connection().exec_driver_sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scratch'"
                if session.bind.dialect.name != "sqlite" else
                "SELECT count(*) FROM sqlite_master WHERE name = 'scratch'").scalar() == 0
    finally:
        app.state.ctx.db.dispose()


def test_a_read_session_refuses_to_write(settings):
    """A reader writing would pass SQLite's writer queue, or commit statement by statement on
    PostgreSQL (its readers run in autocommit): the read session refuses before the statement runs."""
    from sqlalchemy import update

    from reference_app.store.db import Database, ReaderWrote
    from reference_app.store.models import Listing

    db = Database(settings.database_url)
    try:
        with pytest.raises(ReaderWrote, match="UPDATE"):  # refused before it runs: no table needed
            with db.session(write=False) as session:
                session.execute(update(Listing).values(stock=0))
        with db.session(write=False) as session:  # reads pass
            session.connection().exec_driver_sql("SELECT 1")
    finally:
        db.dispose()
