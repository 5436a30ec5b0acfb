"""The notification outbox, delivered: webhooks (HMAC-signed, retried) and the SSE feed.

Notifications are the outbox rows: ``transitions.apply`` (and auctions, messages,
ratings) write them in the same transaction as the change they report, so a
notification exists if and only if its change committed. ``dispatch_once``
turns undispatched rows into one delivery per active endpoint of the user and
flags them dispatched in one transaction, then POSTs due deliveries.

Delivery is at least once: the receiver deduplicates by ``X-Escrowlab-Event-Id``
(the notification id). Each attempt is claimed first (compare-and-swap on the
attempt count, which also schedules the retry with exponential backoff), so two
dispatchers never send the same attempt, and a crash mid-POST is retried.

Signature, as for courier webhooks (services/webhooks.py):
``X-Escrowlab-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta
from typing import Iterable
from urllib.parse import urlparse

import httpx
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from escrow_protocol.webhook import (EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
                                     sign_courier as sign)  # one signature for courier and outgoing webhooks

from ..context import AppContext
from ..store.db import NOTIFIED_USERS, Prepared, insert_at_commit, note_after_commit
from ..store.models import Notification, User, utcnow as now
from ..store.models_market import WebhookDelivery, WebhookEndpoint
from .errors import NotFound, ValidationFailed
from .faults import planted

BATCH = 200
MAX_ENDPOINTS = 5


_NOTIFY = Prepared(insert(Notification.__table__))


def notify(session: Session, user_ids: Iterable[int], kind: str, message: str, order_id: int | None = None) -> None:
    """Notify each of ``user_ids``: an outbox row each, written in this write session's transaction
    (I18; on PostgreSQL as its last statement before the commit, ``insert_at_commit``: so that a
    user's rows commit in id order, which the stream's cursor needs), and their open streams rung
    after it."""
    users = sorted(set(user_ids))
    insert_at_commit(session, _NOTIFY, [{"user_id": u, "order_id": order_id, "kind": kind, "message": message}
                                        for u in users], users)
    note_after_commit(session, NOTIFIED_USERS, *users)


def payload(n: Notification) -> dict:
    return {"id": n.id, "user_id": n.user_id, "order_id": n.order_id, "kind": n.kind, "message": n.message,
            "at": n.at.isoformat()}


def add_endpoint(ctx: AppContext, session: Session, user: User, url: str) -> tuple[WebhookEndpoint, str]:
    """Register a URL; returns the endpoint and its signing secret (shown once)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 500:
        raise ValidationFailed("url must be an absolute http(s) URL of at most 500 characters", field="url")
    if ctx.settings.environment == "production" and parsed.scheme != "https":
        raise ValidationFailed("webhook URLs must use https in production", field="url")
    count = len(session.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.user_id == user.id,
                                                                  WebhookEndpoint.active.is_(True))).all())
    if count >= MAX_ENDPOINTS:
        raise ValidationFailed(f"at most {MAX_ENDPOINTS} webhook endpoints per user", field="url")
    secret = secrets.token_hex(32)
    endpoint = WebhookEndpoint(user_id=user.id, url=url, secret_enc=ctx.box.seal(secret.encode()), active=True)
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def endpoints_of(session: Session, user: User) -> list[WebhookEndpoint]:
    """The user's active webhook endpoints."""
    return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.user_id == user.id,
                                                              WebhookEndpoint.active.is_(True))))


def remove_endpoint(session: Session, user: User, endpoint_id: int) -> None:
    """Stop delivering to one of the user's endpoints (another user's is as good as absent)."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.user_id != user.id:
        raise NotFound(f"webhook {endpoint_id} does not exist")
    endpoint.active = False


# The market loop's pass over the outbox, under load one a pass: whether anything is left to
# dispatch, and the next batch of it (each through SQLAlchemy's execution, 1.5 % of the app's CPU
# in bench escrow, py-spy; prepared, as the notification stream's read is).
_UNDISPATCHED = Notification.dispatched.is_(False)
_ANY_UNDISPATCHED = Prepared(select(Notification.id).where(_UNDISPATCHED).limit(1))
_NEXT_UNDISPATCHED = Prepared(select(Notification.id, Notification.user_id).where(_UNDISPATCHED)
                              .order_by(Notification.id).limit(bindparam("limit")).with_for_update(skip_locked=True))


def queue(session: Session, limit: int = BATCH) -> int:
    """Undispatched notifications -> deliveries, flagged dispatched in the same transaction.

    Read and flagged as rows, in one UPDATE: most users have no endpoint, and loading each
    notification as an ORM object and flagging it through the unit of work was 2.5 % of the
    app's CPU in bench escrow (py-spy), ten notifications an escrow."""
    rows = _NEXT_UNDISPATCHED.rows(session, {"limit": limit})
    if not rows:
        return 0
    endpoints: dict[int, list[int]] = {}
    for endpoint_id, user_id in session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.user_id)
            .where(WebhookEndpoint.user_id.in_({user_id for _, user_id in rows}), WebhookEndpoint.active.is_(True))):
        endpoints.setdefault(user_id, []).append(endpoint_id)
    queued = 0
    for notification_id, user_id in rows:
        for endpoint_id in endpoints.get(user_id, ()):
            try:
                with session.begin_nested():
                    session.add(WebhookDelivery(endpoint_id=endpoint_id, notification_id=notification_id,
                                                status="PENDING", next_attempt_at=now()))
                    session.flush()
                queued += 1
            except IntegrityError:
                pass  # queued by a concurrent dispatcher
    session.execute(update(Notification.__table__).where(Notification.id.in_([n for n, _ in rows]))
                    .values(dispatched=True))
    return queued


def _claim(ctx: AppContext, session: Session, d: WebhookDelivery) -> bool:
    backoff = ctx.settings.webhook_retry_base_s * (2 ** d.attempts)
    result = session.execute(update(WebhookDelivery)
                             .where(WebhookDelivery.id == d.id, WebhookDelivery.attempts == d.attempts,
                                    WebhookDelivery.status == "PENDING")
                             .values(attempts=d.attempts + 1, next_attempt_at=now() + timedelta(seconds=backoff))
                             .execution_options(synchronize_session=False))
    return result.rowcount == 1


def send(ctx: AppContext, http: httpx.Client, url: str, secret: str, body: dict) -> None:
    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = int(time.time())
    response = http.post(url, content=raw, timeout=ctx.settings.webhook_timeout_s, headers={
        "Content-Type": "application/json", TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, raw),
        EVENT_ID_HEADER: str(body["id"])})
    response.raise_for_status()


def deliver_due(ctx: AppContext, http: httpx.Client, limit: int = 50) -> dict[str, int]:
    counts = {"delivered": 0, "failed": 0, "retrying": 0}
    with ctx.db.session(write=False) as s:
        due = s.scalars(select(WebhookDelivery).where(WebhookDelivery.status == "PENDING",
                                                      WebhookDelivery.next_attempt_at <= now())
                        .order_by(WebhookDelivery.id).limit(limit)).all()
    for d in due:
        with ctx.db.session() as s:
            if not _claim(ctx, s, d):
                continue
            endpoint = s.get(WebhookEndpoint, d.endpoint_id)
            body = payload(s.get(Notification, d.notification_id))
            url, secret = endpoint.url, ctx.box.open(endpoint.secret_enc).decode()
        try:  # outside any transaction: a slow receiver holds no lock
            send(ctx, http, url, secret, body)
            error = None
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        with ctx.db.session() as s:
            row = s.get(WebhookDelivery, d.id)
            if error is None:
                row.status, row.delivered_at, row.last_error = "DELIVERED", now(), None
                counts["delivered"] += 1
            else:
                row.last_error = error
                if row.attempts >= ctx.settings.webhook_max_attempts or planted(ctx.settings, "webhook_no_retry"):
                    row.status = "FAILED"
                    counts["failed"] += 1
                else:
                    counts["retrying"] += 1
    return counts


def dispatch_once(ctx: AppContext, http: httpx.Client) -> dict[str, int]:
    """One outbox pass; the lead can call it from the worker loop (it is what the market loop runs)."""
    queued = 0
    if _ANY_UNDISPATCHED.read(ctx.db, {}):  # the common case (nothing new) takes no write lock
        with ctx.db.session() as s:
            queued = queue(s)
    return {"queued": queued, **deliver_due(ctx, http)}


FEED_PAGE = 100  # notifications a page of the SSE feed
_FEED_COLUMNS = ("id", "user_id", "order_id", "kind", "message", "at")
# Read on the stream's event loop, each time a commit rings it: through the ORM, in a thread, this
# read was 5.8 % of the app's GIL-held samples in bench escrow (py-spy), two buyers' streams rung
# about six times an escrow each; 1.3 % like this.
_FEED = Prepared(select(*(Notification.__table__.c[k] for k in _FEED_COLUMNS))
                 .where(Notification.user_id == bindparam("user_id"), Notification.id > bindparam("after"))
                 .order_by(Notification.id).limit(FEED_PAGE))


_NEWEST = Prepared(select(func.coalesce(func.max(Notification.id), 0))
                   .where(Notification.user_id == bindparam("user_id")))


async def newest_id(ctx: AppContext, user_id: int) -> int:
    """The id of the user's newest notification (0: none)."""
    rows = await _NEWEST.aread(ctx.db, {"user_id": user_id})
    return int(rows[0][0])


async def feed_page(ctx: AppContext, user_id: int, after_id: int) -> list[dict]:
    """The next page of the user's notifications after ``after_id``, oldest first, as webhook and
    stream payloads (``payload``)."""
    rows = await _FEED.aread(ctx.db, {"user_id": user_id, "after": after_id})
    return [{**dict(zip(_FEED_COLUMNS, row)), "at": row[5].isoformat()} for row in rows]
