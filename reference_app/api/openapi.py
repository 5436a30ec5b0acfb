"""The OpenAPI document, with every error declared once: each operation may answer
problem+json 400/401/403/404/409/422/429/503, as ``errors.install`` makes them.

FastAPI declares 422 as its own ``HTTPValidationError`` body, which this app never
sends (its validation errors are problem+json too); that entry is replaced here.

The routes read the bearer token in dependencies marked ``deps.signs_in``, not through
FastAPI's ``HTTPBearer`` (a sub-dependency FastAPI would solve on every request): each
operation that depends on one is declared here to need it, as ``HTTPBearer`` would have
declared it.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from .errors import PROBLEM

PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "stable machine-readable cause"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}

ERRORS = {
    "400": "Bad request",
    "401": "Not authenticated, or the token is no longer valid",
    "403": "Authenticated but not allowed",
    "404": "No such object (or not yours to see)",
    "409": "The object's state forbids this now",
    "422": "The request does not validate",
    "429": "Too many attempts; see Retry-After",
    "503": "A Lightning or bitcoin node is unavailable",
}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
BEARER = {"HTTPBearer": {"type": "http", "scheme": "bearer"}}


def _needs_bearer(dependant: Dependant) -> bool:
    """Whether a dependency in ``dependant``'s tree reads the bearer token (``deps.signs_in``)."""
    return any(getattr(sub.call, "signs_in", False) or _needs_bearer(sub) for sub in dependant.dependencies)


def _problem(status: str, description: str) -> dict:
    response = {"description": description,
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if status == "429":
        response["headers"] = {"Retry-After": {"description": "seconds until a retry may succeed",
                                               "schema": {"type": "string"}}}
    return response


def document(app: FastAPI) -> dict:
    from .routes import ROUTERS  # the document's order; the app tries them in routes.DISPATCH order

    routes = [route for router in ROUTERS for route in router.routes]
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    bearer = {(method, route.path_format) for route in routes if isinstance(route, APIRoute)
              and _needs_bearer(route.dependant) for method in (m.lower() for m in route.methods)}
    if bearer:
        schema["components"].setdefault("securitySchemes", {}).update(BEARER)
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            if method not in METHODS:
                continue
            if (method, path) in bearer:
                op["security"] = [{name: []} for name in BEARER]
            responses = op.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses[status] = _problem(status, description)
    return schema


def install(app: FastAPI) -> None:
    """Serve the document above at /openapi.json (built once, on first request)."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi
