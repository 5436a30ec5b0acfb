"""``/docs``: Swagger UI from files shipped in this package (web/static), never from a CDN,
so the API reference works in an offline lab. ReDoc is off (``create_app`` sets
``docs_url=None, redoc_url=None``); the OpenAPI document itself stays at /openapi.json."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from ..services.errors import NotFound

STATIC = Path(__file__).parent / "static"
# The only files /docs/static serves, with their media types (a fixed list: no path from the URL).
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "swagger-favicon-32x32.png": "image/png"}
router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="escrowlab reference marketplace: API",
                               swagger_js_url="/docs/static/swagger-ui-bundle.js",
                               swagger_css_url="/docs/static/swagger-ui.css",
                               swagger_favicon_url="/docs/static/swagger-favicon-32x32.png",
                               # no badge that would ask validator.swagger.io about our schema
                               swagger_ui_parameters={"validatorUrl": None})


@router.get("/docs/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no docs asset {name}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})
