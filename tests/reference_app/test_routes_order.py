"""The app tries its routers in ``routes.DISPATCH`` order (the busiest first), which may
differ from the document's ``ROUTERS`` order: that is only safe while no request matches two
routes, so the order decides nothing but the cost of finding the one."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from reference_app.api.routes import DISPATCH, ROUTERS

ROUTES = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]


def test_every_router_is_dispatched_once():
    assert sorted(map(id, DISPATCH)) == sorted(map(id, ROUTERS))


def test_no_request_matches_two_routes():
    clashes = []
    for route in ROUTES:
        for value in ("1", "x", "mine"):  # path parameters as numbers and as words
            path = re.sub(r"\{[^}]+\}", value, route.path)
            clashes += [(route.path, other.path, sorted(route.methods & other.methods)) for other in ROUTES
                        if other is not route and route.methods & other.methods and other.path_regex.match(path)]
    assert not clashes, f"requests that two routes match (router order would decide between them): {clashes}"


def test_the_document_keeps_the_routers_order(api):
    documented = list(api.get("/openapi.json").json()["paths"])
    expected = list(dict.fromkeys(route.path for route in ROUTES if route.include_in_schema))
    assert documented == expected
