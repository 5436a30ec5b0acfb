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
from reference_app.api.routes import ROUTERS


def session_scopes(dependant: Dependant, path: str, found: list) -> None:
    for sub in dependant.dependencies:
        if sub.call is get_session:
            found.append((path, sub.scope))
        session_scopes(sub, path, found)


def test_session_dependency_ends_before_response_on_every_route():
    found: list[tuple[str, str | None]] = []
    for route in (r for router in ROUTERS for r in router.routes):
        if isinstance(route, APIRoute):
            session_scopes(route.dependant, f"{','.join(sorted(route.methods))} {route.path}", found)
    assert len({path for path, _ in found}) > 20, "expected most routes to use the request's session"
    late = sorted({path for path, scope in found if scope != "function"})
    assert not late, f"these routes commit after responding (use deps.DbSession): {late}"


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
