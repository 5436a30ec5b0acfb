"""/docs is Swagger UI from the package's own files: no CDN, no other host named."""

from __future__ import annotations

import re
from pathlib import Path

import reference_app.web

STATIC = Path(reference_app.web.__file__).parent / "static"


def test_docs_page_names_no_external_url(api):
    page = api.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert set(urls) == {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css",
                         "/docs/static/swagger-favicon-32x32.png", "/openapi.json"}
    assert "cdn." not in page.text and "https://" not in page.text and "http://" not in page.text


def test_docs_assets_are_served_from_the_package(api):
    for name, media in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css"),
                        ("swagger-favicon-32x32.png", "image/png")):
        answer = api.get(f"/docs/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media), name
        assert answer.content == (STATIC / name).read_bytes()
    assert api.get("/docs/static/README.md").status_code == 404
    assert api.get("/docs/static/..%2Fdocs.py").status_code == 404
    assert api.get("/redoc").status_code == 404
    assert api.get("/openapi.json").json()["info"]["title"] == "escrowlab reference marketplace"


def test_vendored_swagger_ui_is_the_noted_version_with_its_license():
    readme = (STATIC / "README.md").read_text()
    assert "swagger-ui-dist 5.35.0" in readme and "Apache-2.0" in readme
    assert "Apache License" in (STATIC / "swagger-ui-LICENSE").read_text()
    assert 'PACKAGE_VERSION:"5.35.0"' in (STATIC / "swagger-ui-bundle.js").read_text()
