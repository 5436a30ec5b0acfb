"""Every route's database session ends before its response is sent.

FastAPI ends a yield dependency after the response by default. For the request's
session that would commit after the client was told the outcome: a 201 whose row the
next request cannot find yet, or a success whose commit then failed. Found on
PostgreSQL, where a listing created with 201 was "not found" by the next request."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from reference_app.api.deps import DbSession, current_principal, get_session, require_role
from reference_app.api.routing import Route
from reference_app.api.routes import ROUTERS
from reference_app.main import create_app

from .test_listings import make_user


def test_session_dependency_ends_before_response_on_every_route():
    """routing.Route ends the request's session; a route of another class would leave it open.
    The dependencies that sign a user in take the session by calling ``get_session`` with the
    request, out of FastAPI's sight, so every route of the API is a Route, not only those
    whose tree shows ``DbSession``."""
    routes = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 50
    late = sorted(f"{','.join(sorted(route.methods))} {route.path}" for route in routes if not isinstance(route, Route))
    assert not late, f"these routes would never end their session (use api.routing.Route): {late}"


def test_a_request_signs_in_once_and_holds_one_session(settings):
    """``require_role``, ``current_principal`` through ``Depends`` and ``get_session`` called
    directly all meet the same session and the same user read, and the write limit counts
    the request once."""
    app = create_app(settings, with_node=False)
    router = APIRouter(route_class=Route)
    seen: list[tuple] = []

    @router.post("/probe", dependencies=[Depends(require_role("seller"))])
    async def probe(request: Request, user=Depends(current_principal), session=DbSession) -> dict:
        seen.append((session is await get_session(request), user is await current_principal(request)))
        return {"id": user.id}

    app.include_router(router)
    hits: list[tuple[str, str]] = []
    with TestClient(app) as http:
        seller_id, headers = make_user(http, "seller")
        limiter = app.state.limiter
        real_hit = limiter.hit
        limiter.hit = lambda rule, key: (hits.append((rule, key)), real_hit(rule, key))[1]
        r = http.post("/probe", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"id": seller_id}
        assert seen == [(True, True)]
        assert hits == [("write_account", str(seller_id))]
        assert http.post("/probe").status_code == 401  # no token: the same refusal as before
        assert http.post("/probe", headers={"Authorization": "Basic " + headers["Authorization"].split()[1]}
                         ).status_code == 401
    app.state.ctx.db.dispose()


def test_a_route_of_another_class_is_refused_the_session(settings):
    """The session is no yield dependency, so only Route ends it: elsewhere it is refused,
    with the reason, instead of left open."""
    from fastapi import FastAPI

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
