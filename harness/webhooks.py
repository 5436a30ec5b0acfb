"""The harness's end of a marketplace's outgoing webhooks: a loopback receiver that checks each
POST's signature (the protocol's, ``escrow_protocol.webhook``) and records what arrived, so that
I18 judges the webhook as it judges the notification stream.

A party's webhook is registered through the driver (``Marketplace.subscribe_webhook``) with a URL
of its own here (``url``). Delivery is at least once: the receiver keeps each notification id once,
however often it came. A POST whose signature does not verify is refused (401) and recorded, as a
receiver that checks signatures must; so is one whose body is not the notification its
``X-Escrowlab-Event-Id`` names. ``down()`` answers 503 to every POST while inside, as an endpoint
that is restarting does: a marketplace must try again later, and the oracle then judges whether
what came meanwhile arrived.
"""

from __future__ import annotations

import hmac
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from escrow_protocol.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_courier as sign

from .driver import Streamed

PATH = "/hooks/"


@dataclass
class _Endpoint:
    secret: str
    after: int                                       # the newest notification when it was registered
    delivered: dict[int, tuple[str, int | None]] = field(default_factory=dict)  # id -> (kind, order id)
    refused: dict[int, str] = field(default_factory=dict)  # id -> why a POST of it was refused
    down: bool = False
    turned_away: int = 0                             # POSTs answered 503 since it last went down


class WebhookReceiver:
    """One loopback HTTP server for every party's webhook; ``close`` stops it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._endpoints: dict[str, _Endpoint] = {}
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._receive(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def url(self, key: str | int) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{PATH}{key}"

    def expect(self, key: str | int, secret: str, after: int = 0) -> None:
        """Receive for ``key`` from now on: POSTs signed with ``secret``; notifications newer than
        ``after`` are owed."""
        with self._changed:
            self._endpoints.setdefault(str(key), _Endpoint(secret, after))

    def watched(self, key: str | int) -> bool:
        with self._changed:
            return str(key) in self._endpoints

    @contextmanager
    def down(self, key: str | int) -> Iterator[None]:
        """Answer 503 to every POST for ``key`` while inside (``turned_away`` counts them)."""
        with self._changed:
            endpoint = self._endpoints[str(key)]
            endpoint.down, endpoint.turned_away = True, 0
        try:
            yield
        finally:
            with self._changed:
                endpoint.down = False

    def turned_away(self, key: str | int, n: int, timeout: float) -> bool:
        """Whether ``key``'s endpoint has answered 503 to ``n`` POSTs since it last went ``down``,
        within ``timeout`` seconds: a story waits so that the marketplace tries while it is down."""
        with self._changed:
            endpoint = self._endpoints[str(key)]
            return self._changed.wait_for(lambda: endpoint.turned_away >= n, timeout)

    def received(self, key: str | int, inbox: list[dict], grace: float = 10.0) -> Streamed:
        """What arrived for ``key``, once every notification of ``inbox`` it owes has arrived or
        ``grace`` seconds have passed (a marketplace retries with a backoff)."""
        with self._changed:
            endpoint = self._endpoints[str(key)]
            ids = {n.get("id") for n in Streamed(endpoint.after, {}).owed(inbox)}
            self._changed.wait_for(lambda: ids <= endpoint.delivered.keys(), grace)
            return Streamed(endpoint.after, dict(endpoint.delivered), refused=dict(endpoint.refused))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _receive(self, path: str, headers, body: bytes) -> int:
        """The status for one POST (``headers``: a case-blind mapping, as http.server's)."""
        key = path[len(PATH):] if path.startswith(PATH) else None
        event = headers.get(EVENT_ID_HEADER, "")
        nid = int(event) if event.isdigit() else None
        with self._changed:
            endpoint = self._endpoints.get(key) if key is not None else None
            if endpoint is None:
                return 404
            if endpoint.down:
                endpoint.turned_away += 1
                self._changed.notify_all()
                return 503
            status, outcome = _verified(endpoint.secret, headers, body, nid)
            if status != 200:
                if nid is not None:
                    endpoint.refused.setdefault(nid, outcome)
                return status
            told = outcome
            endpoint.delivered[told[0]] = told[1]
            self._changed.notify_all()
            return 200


def _verified(secret: str, headers, body: bytes, nid: int | None):
    """``(200, (id, (kind, order id)))`` for a POST a receiver may keep; else the status it is
    refused with and why."""
    timestamp, signature = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    if not timestamp.isdigit() or not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        return 401, "its signature does not verify with the endpoint's secret"
    try:
        item = json.loads(body)
        told = int(item["id"]), (str(item["kind"]), item.get("order_id"))
    except (ValueError, KeyError, TypeError):
        return 400, "its body is not a notification"
    if nid is not None and told[0] != nid:
        return 400, f"its body is notification {told[0]}, not the {EVENT_ID_HEADER} it names"
    return 200, told
