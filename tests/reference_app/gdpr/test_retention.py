"""Retention (no nodes): read notifications past the retention period go; unread ones and
recent ones stay. A user without orders can export and erase themselves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from reference_app.main import create_app
from reference_app.services import gdpr
from reference_app.services.transitions import now
from reference_app.store.models import Notification
from tests.reference_app.conftest import make_settings
from tests.reference_app.test_listings import make_user


@pytest.fixture
def quiet_api(tmp_path):
    """The app without its market loop, so retention runs only when the test calls it."""
    app = create_app(make_settings(tmp_path, run_market_loop=False), with_node=False)
    with TestClient(app) as client:
        yield client
    app.state.ctx.db.dispose()


def test_retention_drops_only_old_read_notifications(quiet_api):
    api = quiet_api
    ctx = api.app.state.ctx
    uid, _headers = make_user(api, "buyer")
    old = now() - timedelta(days=ctx.settings.notification_retention_days + 1)
    with ctx.db.session() as s:
        s.add_all([Notification(user_id=uid, kind="x.old_read", message="a", read=True, at=old),
                   Notification(user_id=uid, kind="x.old_unread", message="b", read=False, at=old),
                   Notification(user_id=uid, kind="x.new_read", message="c", read=True)])
    assert gdpr.apply_retention(ctx)["notifications_deleted"] == 1
    with ctx.db.session(write=False) as s:
        kinds = set(s.scalars(select(Notification.kind).where(Notification.user_id == uid)))
    assert kinds == {"x.old_unread", "x.new_read"}


def test_user_without_orders_exports_then_erases_themselves(api):
    uid, headers = make_user(api, "buyer")
    exported = api.get("/me/export", headers=headers).json()
    assert (exported["profile"]["id"], exported["orders"], exported["profile"]["address"]) == (uid, [], None)
    erased = api.post("/me/erase", headers=headers)
    assert erased.status_code == 200 and erased.json()["erased"]
    assert api.get("/me", headers=headers).json()["code"] == "not_authenticated"   # tokens revoked
