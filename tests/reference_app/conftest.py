"""Fixtures for the reference app. ``api`` needs no nodes (accounts, listings);
escrow tests use ``market`` from tests/reference_app/escrow/conftest.py, on the real cluster."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Iterator

import pyotp.totp
import pytest
from fastapi.testclient import TestClient

from reference_app.config import Settings
from reference_app.main import create_app
from reference_app.services import totp as totp_service
from tests.conftest import fresh_database_url


def make_settings(tmp_path, **over) -> Settings:
    """Settings for one app; under ESCROWLAB_TEST_DB=postgres every call gets a fresh database.
    Passwords are hashed at argon2's cheapest cost, as the harness's apps hash them: at the
    standard cost a hash is about 0.2 CPU-seconds, and the account tests' logins and lockouts
    spent minutes of CI on it (test_password_hashing checks both costs)."""
    url = fresh_database_url(tmp_path.name) or f"sqlite:///{tmp_path / 'app.db'}"
    base = dict(environment="test", data_dir=tmp_path, database_url=url, password_hashing="light",
                bootstrap_admin_email="admin@example.com", bootstrap_admin_password="admin-password-1")
    base.update(over)
    return Settings(**base)


@pytest.fixture(autouse=True)
def totp_clock(monkeypatch) -> float:
    """Stop the clock that two-factor codes are read by, in the middle of the current 30 s step,
    for the app and for pyotp alike. A code is valid for one step either side of now; a test that
    made a code in one step and sent it after the next boundary saw it refused (CI, 6bc06a4)."""
    interval = pyotp.TOTP(pyotp.random_base32()).interval
    moment = (time.time() // interval + 0.5) * interval
    frozen = SimpleNamespace(time=lambda: moment)
    monkeypatch.setattr(totp_service, "time", frozen)
    monkeypatch.setattr(pyotp.totp, "time", frozen)
    return moment


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def api(settings) -> Iterator[TestClient]:
    """The app without a Lightning node: accounts, listings and everything that needs no hub."""
    app = create_app(settings, with_node=False)
    with TestClient(app) as client:
        yield client
    app.state.ctx.db.dispose()
