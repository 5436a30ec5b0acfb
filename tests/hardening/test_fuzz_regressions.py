"""Regressions for what the schema fuzz found, reproduced without nodes:
ids beyond 64 bits were 500s (SQLite OverflowError), and order times left
without their UTC offset (not RFC 3339 date-times)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

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


def test_times_on_the_wire_carry_their_utc_offset(http):
    """Every stored moment reads back aware (store.models.UtcDateTime), so a schema serialises it
    with its offset without a validator of its own: here the account's, on SQLite."""
    body = http.get("/me").json()
    moment = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0), body["created_at"]
