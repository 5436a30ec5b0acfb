"""The courier webhook: what a courier posts to confirm delivery, and how it is signed.

Body (JSON): ``event_id`` (unique per courier), ``tracking_number``, ``status`` (one of
``COURIER_STATUSES``) and ``address_hash`` (``address_hash`` of the delivery address).
Headers: ``X-Escrowlab-Timestamp: <unix seconds>`` and
``X-Escrowlab-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.

A marketplace's outgoing notification webhooks are signed the same way, with the secret it gave
when the endpoint was registered, and name the notification in ``X-Escrowlab-Event-Id`` (its
``id``: a receiver deduplicates by it). Body (JSON): ``id``, ``user_id``, ``order_id``, ``kind``,
``message``, ``at``, as the party's inbox lists it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

COURIER_STATUSES = ("label_created", "in_transit", "out_for_delivery", "delivered", "exception", "lost")
TIMESTAMP_HEADER = "X-Escrowlab-Timestamp"
SIGNATURE_HEADER = "X-Escrowlab-Signature"
EVENT_ID_HEADER = "X-Escrowlab-Event-Id"


def address_hash(address: str) -> str:
    """The hash a courier reports for a delivery address: lower case, commas and runs of
    blanks made one space, then sha256 in hex."""
    normal = " ".join(address.lower().replace(",", " ").split())
    return hashlib.sha256(normal.encode()).hexdigest()


def sign_courier(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def courier_body(tracking: str, status: str, address: str, event_id: str | None = None) -> bytes:
    return json.dumps({"event_id": event_id or uuid.uuid4().hex, "tracking_number": tracking,
                       "status": status, "address_hash": address_hash(address)}).encode()


def courier_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_courier(secret, ts, body),
            "Content-Type": "application/json"}
