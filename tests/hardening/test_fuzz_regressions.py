"""Regressions for what the schema fuzz found, reproduced without nodes:
ids beyond 64 bits were 500s (SQLite OverflowError), and order times left
without their UTC offset (not RFC 3339 date-times)."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from reference_app.api.params import UtcDateTime, as_utc
from reference_app.main import create_app
from tests.reference_app.conftest import make_settings

BEYOND = 2**63  # one past the largest id SQLite and PostgreSQL store


@pytest.fixture
def http(tmp_path):
    app = create_app(make_settings(tmp_path), with_node=False)
    with TestClient(app) as client:
        client.post("/auth/register", json={"email": "f@example.com", "password": "long-password-1",
                                            "display_name": "f", "roles": ["buyer", "seller"]})
        token = client.post("/auth/login", json={"email": "f@example.com", "password": "long-password-1"})
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client
    app.state.ctx.db.dispose()


@pytest.mark.parametrize("method,path", [("GET", f"/listings/{BEYOND}"), ("GET", f"/orders/{BEYOND}"),
                                         ("GET", f"/users/{BEYOND}/reputation"),
                                         ("DELETE", f"/me/webhooks/{BEYOND}")])
def test_request_oversized_path_id_is_422(http, method, path):
    response = http.request(method, path)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"


def test_request_oversized_body_id_is_422(http):
    response = http.post("/orders", json={"listing_id": BEYOND})
    assert response.status_code == 422, response.text
    assert "out of range" in response.json()["detail"]


def test_as_utc_marks_naive_times_utc():
    from pydantic import TypeAdapter

    moment = TypeAdapter(UtcDateTime).validate_python(datetime(2026, 1, 2, 3, 4, 5))
    assert moment.isoformat() == "2026-01-02T03:04:05+00:00"
    assert as_utc(None) is None
