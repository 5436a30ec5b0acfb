"""Rate limits: the token bucket itself (a fake clock, no nodes), and the limits
as the API applies them: logins, two-factor codes, writes and courier webhooks, each refused with
problem+json 429, a stable code and Retry-After."""

from __future__ import annotations

import json
import time
import uuid
from typing import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from reference_app.api.ratelimit import Limiter, RateLimited
from reference_app.config import Settings
from reference_app.main import create_app
from escrow_protocol.webhook import sign_courier as sign
from tests.reference_app.conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hit_refuses_beyond_burst_and_refills():
    clock = Clock()
    limiter = Limiter({"login": (3, 60)}, clock)  # 3 at once, then one a second
    for _ in range(3):
        limiter.hit("login", "1.2.3.4")
    with pytest.raises(RateLimited) as refused:
        limiter.hit("login", "1.2.3.4")
    assert refused.value.extra["retry_after_s"] == 1
    limiter.hit("login", "5.6.7.8")  # another key has its own bucket
    clock.now += 1.0
    limiter.hit("login", "1.2.3.4")
    with pytest.raises(RateLimited):
        limiter.hit("login", "1.2.3.4")


def test_hit_ignores_unknown_rule():
    limiter = Limiter({}, Clock())
    for _ in range(100):
        limiter.hit("write_account", "7")


def test_settings_reject_empty_bucket(tmp_path):
    with pytest.raises(ValueError, match="rate limit"):
        Settings(environment="test", data_dir=tmp_path, rate_limits={"login_address": (0, 10)})


def _app(tmp_path, **limits) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path, rate_limits={**Settings().rate_limits, **limits}), with_node=False)
    with TestClient(app) as client:
        yield client
    app.state.ctx.db.dispose()


@pytest.fixture
def tight(tmp_path) -> Iterator[TestClient]:
    yield from _app(tmp_path, login_account=(3, 1), totp=(2, 1), write_account=(5, 1), write_address=(4, 1))


def _register(http: TestClient, email: str) -> None:
    assert http.post("/auth/register", json={"email": email, "password": "long-password-1", "display_name": "x",
                                             "roles": ["seller"]}).status_code == 201


def _token(http: TestClient, email: str) -> str:
    return http.post("/auth/login", json={"email": email, "password": "long-password-1"}).json()["access_token"]


def assert_limited(response, rule: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["code"] == "rate_limited" and body["rule"] == rule and rule in body["detail"]


def test_login_limited_per_account_before_lockout(tight):
    _register(tight, "ann@example.com")
    for _ in range(3):
        assert tight.post("/auth/login", json={"email": "ann@example.com", "password": "wrong-one-123"}).status_code == 401
    assert_limited(tight.post("/auth/login", json={"email": "ann@example.com", "password": "long-password-1"}),
                   "login_account")
    # another account from the same address is not affected
    _register(tight, "bob@example.com")
    assert tight.post("/auth/login", json={"email": "bob@example.com", "password": "long-password-1"}).status_code == 200


def test_totp_verify_limited_per_account(tight):
    _register(tight, "cy@example.com")
    auth = {"Authorization": f"Bearer {_token(tight, 'cy@example.com')}"}
    assert tight.post("/auth/totp/enrol", headers=auth).status_code == 200
    answers = [tight.post("/auth/totp/verify", json={"code": "000000"}, headers=auth) for _ in range(3)]
    assert all(a.status_code in (401, 422) for a in answers[:2]), [a.text for a in answers[:2]]
    assert_limited(answers[2], "totp")


def test_writes_limited_per_account(tight):
    _register(tight, "di@example.com")
    auth = {"Authorization": f"Bearer {_token(tight, 'di@example.com')}"}
    answers = [tight.patch("/me", json={"display_name": f"d{i}"}, headers=auth) for i in range(6)]
    assert [a.status_code for a in answers[:5]] == [200] * 5
    assert_limited(answers[5], "write_account")
    assert tight.get("/me", headers=auth).status_code == 200  # reads are not writes


def test_register_limited_per_address(tight):
    for i in range(3):  # _register above used none of this app's budget: 4 in all
        _register(tight, f"e{i}@example.com")
    _register(tight, "e3@example.com")
    assert_limited(tight.post("/auth/register", json={"email": "e4@example.com", "password": "long-password-1",
                                                      "display_name": "x"}), "write_address")


def test_limits_off_when_disabled(tmp_path):
    app = create_app(make_settings(tmp_path, rate_limits_enabled=False,
                                   rate_limits={"write_address": (1, 1)}), with_node=False)
    with TestClient(app) as http:
        for i in range(3):
            _register(http, f"f{i}@example.com")
    app.state.ctx.db.dispose()


def test_wallet_writes_limited_per_account(tmp_path):
    """Wallet routes authenticate through ``account_holder``, which must pass the request on
    to the one ``current_user`` (a regression: it once called it without)."""
    for http in _app(tmp_path, write_account=(1, 1)):
        _register(http, "g@example.com")
        auth = {"Authorization": f"Bearer {_token(http, 'g@example.com')}"}
        assert http.post("/wallet/deposits/ln", json={}, headers=auth).status_code != 429
        assert_limited(http.post("/wallet/deposits/ln", json={}, headers=auth), "write_account")


def _courier_event(http: TestClient, courier: str, secret: str) -> httpx.Response:
    body = json.dumps({"event_id": uuid.uuid4().hex, "tracking_number": "TRACK-NONE", "status": "delivered",
                       "address_hash": "0" * 64}).encode()
    ts = int(time.time())
    return http.post(f"/webhooks/courier/{courier}", content=body,
                     headers={"X-Escrowlab-Timestamp": str(ts), "X-Escrowlab-Signature": sign(secret, ts, body),
                              "Content-Type": "application/json"})


def test_courier_webhooks_limited_per_courier_after_the_signature_check(tmp_path):
    """Forgeries keep their 401 and spend nothing; signed events spend the courier's own bucket."""
    for http in _app(tmp_path, webhook_courier=(2, 1)):
        secrets = http.app.state.ctx.settings.courier_secrets
        for _ in range(5):
            forged = _courier_event(http, "fastship", "not-the-secret")
            assert forged.status_code == 401 and forged.json()["code"] == "webhook_rejected", forged.text
        for _ in range(2):  # signed, for no shipped order: past the limit, then 404
            assert _courier_event(http, "fastship", secrets["fastship"]).status_code == 404
        assert_limited(_courier_event(http, "fastship", secrets["fastship"]), "webhook_courier")
        assert _courier_event(http, "fastship", "not-the-secret").status_code == 401  # still its own error
        assert _courier_event(http, "slowpost", secrets["slowpost"]).status_code == 404  # another courier's bucket
