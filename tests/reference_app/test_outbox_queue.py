"""The outbox's queue turns undispatched notifications into webhook deliveries (no nodes).

It now reads and flags them as rows, in one UPDATE, where it loaded each as an ORM object:
every notification is flagged, whether or not its user has an endpoint; a delivery is queued
for each active endpoint of its user, once; and a second pass finds nothing to do."""

from __future__ import annotations

from sqlalchemy import select

from reference_app.services import outbox
from reference_app.store.models import Notification, User
from reference_app.store.models_market import WebhookDelivery
from tests.reference_app.test_listings import make_user


def test_queue_flags_every_notification_and_queues_one_delivery_per_active_endpoint(api):
    ctx = api.app.state.ctx
    (hooked, _), (quiet, _) = make_user(api, "buyer"), make_user(api, "seller")
    with ctx.db.session() as session:
        user = session.get(User, hooked)
        one, _secret = outbox.add_endpoint(ctx, session, user, "http://127.0.0.1:9/a")
        two, _secret = outbox.add_endpoint(ctx, session, user, "http://127.0.0.1:9/b")
        gone, _secret = outbox.add_endpoint(ctx, session, user, "http://127.0.0.1:9/c")
        outbox.remove_endpoint(session, user, gone.id)
        session.add_all([Notification(user_id=uid, kind="order.funded", message=f"n{i}")
                         for i, uid in enumerate([hooked, quiet, hooked, quiet, quiet])])
    endpoints = {one.id, two.id}

    with ctx.db.session() as session:
        assert outbox.queue(session) == 4  # two notifications of the hooked user, two endpoints each
    with ctx.db.session() as session:
        assert outbox.queue(session) == 0
        flags = session.execute(select(Notification.user_id, Notification.dispatched)).all()
        deliveries = session.execute(select(WebhookDelivery.endpoint_id, WebhookDelivery.notification_id,
                                            WebhookDelivery.status)).all()
        hooked_ids = session.scalars(select(Notification.id).where(Notification.user_id == hooked)).all()
    assert len(flags) == 5 and all(dispatched for _, dispatched in flags)
    assert sorted(deliveries) == sorted((e, n, "PENDING") for e in endpoints for n in hooked_ids)
