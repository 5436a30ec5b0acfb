"""Courier webhooks: HMAC-signed, timestamped, replay-protected delivery evidence.

Signature: ``X-Escrowlab-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
with ``X-Escrowlab-Timestamp: <unix seconds>``, as Stripe-style webhooks do.
The event id is unique per courier, so a replayed event changes nothing (409).
"""

from __future__ import annotations

import hmac
import json
import time

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from escrow_protocol.webhook import COURIER_STATUSES, sign_courier

from ..context import AppContext
from ..store.models import Order, WebhookEvent
from . import records, transitions
from .faults import planted
from .errors import NotFound, ValidationFailed, WebhookRejected, WebhookReplayed
from .lifecycle import E

STATUSES = COURIER_STATUSES
sign = sign_courier  # the protocol's signature (escrow_protocol.webhook)


def verify(ctx: AppContext, courier: str, timestamp: str | None, signature: str | None, body: bytes) -> dict:
    secret = ctx.settings.courier_secrets.get(courier)
    if secret is None:
        raise WebhookRejected(f"unknown courier {courier!r}")
    if not timestamp or not signature:
        raise WebhookRejected("missing X-Escrowlab-Timestamp or X-Escrowlab-Signature header")
    try:
        ts = int(timestamp)
    except ValueError:
        raise WebhookRejected("X-Escrowlab-Timestamp must be unix seconds") from None
    if abs(time.time() - ts) > ctx.settings.webhook_tolerance_s:
        raise WebhookRejected(f"timestamp is outside the {ctx.settings.webhook_tolerance_s}s window")
    if not hmac.compare_digest(sign(secret, ts, body), signature) and not planted(ctx.settings,
                                                                                 "ignore_webhook_signature"):
        raise WebhookRejected("signature does not match the body")
    try:
        event = json.loads(body)
    except ValueError:
        raise ValidationFailed("body is not JSON", field="body") from None
    for field in ("event_id", "tracking_number", "status"):
        if not isinstance(event.get(field), str) or not event[field]:
            raise ValidationFailed(f"{field} is required", field=field)
    if event["status"] not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}", field="status")
    return event


def handle(ctx: AppContext, session: Session, courier: str, event: dict, height: int | None) -> dict:
    """Record the event (once) and, for a matching delivery, move the order to DELIVERED."""
    order = records.first(session, Order.courier == courier, Order.tracking_number == event["tracking_number"])
    if order is None:
        raise NotFound(f"no order shipped with {courier} tracking number {event['tracking_number']}")
    session.add(WebhookEvent(courier=courier, event_id=event["event_id"]))
    try:
        session.flush()
    except IntegrityError:
        raise WebhookReplayed(f"event {event['event_id']} from {courier} was already processed") from None
    if event["status"] != "delivered":
        return {"order_id": order.id, "state": order.state, "applied": False}
    if event.get("address_hash") != order.buyer_address_hash:
        raise ValidationFailed("the delivery address does not match the buyer's address", field="address_hash")
    # In custody this is a self-transition that records the evidence for the ruling.
    transitions.apply(session, ctx.settings, order, E.DELIVERED, f"courier:{courier}", height,
                      detail=f"delivered ({event['event_id']})", delivered_evidence=True)
    return {"order_id": order.id, "state": order.state, "applied": True}
