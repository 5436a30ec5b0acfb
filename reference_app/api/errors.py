"""Every error leaves as RFC 9457 problem+json with a stable ``code``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..services.errors import DomainError

PROBLEM = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": f"urn:escrowlab:problem:{code}", "title": title, "status": status,
            "code": code, "detail": detail, **extra}
    headers = {}
    if "retry_after_s" in extra:
        headers["Retry-After"] = str(extra["retry_after_s"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_req: Request, exc: DomainError):
        return problem(exc.status, exc.code, type(exc).__name__, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = _field(tuple(first.get("loc", ())))
        return problem(422, "validation_failed", "ValidationFailed", f"{field}: {first['msg']}", field=field,
                       errors=[{"field": _field(tuple(e.get("loc", ()))), "message": e["msg"]} for e in errors])

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(_req: Request, _exc: Exception):
        # SQLite cannot bind an int beyond 64 bits (OverflowError) and PostgreSQL refuses one
        # (DataError): a number in the request was out of range, not a server fault.
        return problem(422, "validation_failed", "ValidationFailed",
                       "a number in the request is out of range (beyond a 64-bit integer)")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, "HTTPError", str(exc.detail))
