"""``password_hashing``: the harness's short-lived apps hash passwords at argon2's cheapest
cost; the default stays the standard cost, and production refuses anything else."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from reference_app.config import Settings
from reference_app.main import create_app
from reference_app.store.models import User
from tests.reference_app.conftest import make_settings


def _registered_hash(settings) -> str:
    app = create_app(settings, with_node=False)
    try:
        with TestClient(app) as client:
            resp = client.post("/auth/register", json={"email": "a@example.com", "password": "long-enough-pw",
                                                       "display_name": "a", "roles": ["buyer"]})
            assert resp.status_code == 201, resp.text
            assert client.post("/auth/login", json={"email": "a@example.com",
                                                    "password": "long-enough-pw"}).status_code == 200
        with app.state.ctx.db.session() as session:
            return session.scalars(select(User.password_hash).where(User.email == "a@example.com")).one()
    finally:
        app.state.ctx.db.dispose()


def test_light_hashing_is_argon2_at_its_cheapest_and_standard_is_the_default(tmp_path):
    light = extract_parameters(_registered_hash(make_settings(tmp_path / "l", password_hashing="light")))
    standard = extract_parameters(_registered_hash(make_settings(tmp_path / "s", password_hashing="standard")))
    assert Settings(environment="test").password_hashing == "standard"  # the default
    assert (light.time_cost, light.memory_cost, light.parallelism) == (1, 1024, 1)
    assert standard.time_cost >= 2 and standard.memory_cost >= 19 * 1024


def test_production_refuses_light_hashing():
    with pytest.raises(ValidationError, match="password_hashing must be standard in production"):
        Settings(environment="production", password_hashing="light", secret_key="k" * 40,
                 encryption_keys=["x"], courier_secrets={"c": "s"}, database_url="postgresql://h/db",
                 arbiter_seed="seed")
