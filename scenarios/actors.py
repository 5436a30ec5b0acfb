"""Synthetic marketplace parties: thin clients of the app's HTTP API, each with
its own Lightning node where it has one. They take any httpx client: a
TestClient in-process or a real one against `escrowlab app serve`."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx

from regtest_cluster.nodes.lnd import LndError, LndNode
from regtest_cluster.waiting import wait_for
from reference_app.services.crypto import address_hash
from reference_app.services.webhooks import sign


class ApiError(AssertionError):
    """An unexpected HTTP answer; carries the problem+json body."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.problem = response.json()
        except ValueError:
            self.problem = {"detail": response.text}
        super().__init__(f"HTTP {self.status} {self.problem.get('code', '')}: {self.problem.get('detail', '')}")


@dataclass
class Party:
    """A registered user acting through the API."""

    http: httpx.Client
    email: str
    roles: list[str]
    node: LndNode | None = None
    address: str = ""
    token: str = ""
    id: int = 0
    password: str = field(default_factory=lambda: "pw-" + uuid.uuid4().hex[:12])

    @classmethod
    def register(cls, http: httpx.Client, name: str, roles: list[str], node: LndNode | None = None,
                 address: str = "") -> "Party":
        party = cls(http, f"{name}-{uuid.uuid4().hex[:6]}@example.com", roles, node, address)
        party.call("POST", "/auth/register", json={"email": party.email, "password": party.password,
                                                    "display_name": name, "roles": roles}, expect=201)
        party.login()
        if address:
            party.call("PUT", "/me/address", json={"address": address})
        return party

    def login(self) -> None:
        tokens = self.call("POST", "/auth/login", json={"email": self.email, "password": self.password}, auth=False)
        self.token = tokens["access_token"]
        self.id = self.call("GET", "/me")["id"]

    def call(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 204), auth: bool = True,
             **kwargs) -> dict:
        headers = kwargs.pop("headers", {})
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in expected:
            raise ApiError(response)
        return response.json() if response.content else {}

    def attempt(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A call whose failure is the point: returns the raw response."""
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def bind_payout_node(self) -> None:
        """Let the hub ask this party's node for payout invoices (invoice macaroon only)."""
        node = self.node
        macaroon = (node.macaroon_path.parent / "invoice.macaroon").read_bytes().hex()
        self.call("PUT", "/me/payout-node", json={"node_pubkey": node.pubkey, "rest_url": node.rest_url,
                                                  "macaroon_hex": macaroon,
                                                  "tls_cert_pem": node.tls_cert.read_text()})

    def order(self, order_id: int) -> dict:
        return self.call("GET", f"/orders/{order_id}")

    def wait_state(self, order_id: int, *states: str, timeout: float = 30) -> dict:
        last: dict = {}

        def reached():
            nonlocal last
            last = self.order(order_id)
            return last if last["state"] in states else None

        try:
            return wait_for(reached, timeout=timeout, what=f"order {order_id} in {'/'.join(states)}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; order was {last.get('state')}, payouts {last.get('payouts')}") from None


class Seller(Party):
    def list_item(self, title: str, price_sats: int, stock: int = 10, category: str = "electronics") -> dict:
        return self.call("POST", "/listings", json={"title": title, "description": f"{title}, as new",
                                                    "category": category, "price_sats": price_sats,
                                                    "stock": stock}, expect=201)

    def ship(self, order_id: int, courier: str, tracking: str) -> dict:
        return self.call("POST", f"/orders/{order_id}/ship", json={"courier": courier, "tracking_number": tracking})


class Buyer(Party):
    def buy(self, listing_id: int, quantity: int = 1) -> dict:
        return self.call("POST", "/orders", json={"listing_id": listing_id, "quantity": quantity}, expect=201)

    def pay(self, order: dict) -> threading.Thread:
        """Pay the hold invoice from this buyer's own node. The payment stays in
        flight until the hub settles or cancels, so it runs in a thread."""
        request = order["hold"]["payment_request"]
        outcome: dict = {}

        def run():
            try:
                outcome.update(self.node.rest.send_payment(request, timeout_s=60, fee_limit_sats=100))
            except LndError as exc:  # the node went away mid-payment: record, do not crash the thread
                outcome.update(status="ERROR", error=str(exc))

        thread = threading.Thread(target=run, name=f"pay-{order['id']}", daemon=True)
        thread.outcome = outcome  # type: ignore[attr-defined]
        thread.start()
        return thread

    def confirm(self, order_id: int) -> dict:
        return self.call("POST", f"/orders/{order_id}/confirm")


class Arbiter(Party):
    def rule(self, order_id: int, ruling: str, buyer_share_pct: float | None = None) -> dict:
        body = {"ruling": ruling, **({"buyer_share_pct": buyer_share_pct} if buyer_share_pct else {})}
        return self.call("POST", f"/orders/{order_id}/dispute/ruling", json=body)


@dataclass
class Courier:
    """A logistics company posting signed tracking events."""

    http: httpx.Client
    name: str
    secret: str

    def event(self, tracking: str, status: str, address: str, event_id: str | None = None,
              timestamp: int | None = None, secret: str | None = None) -> httpx.Response:
        body = json.dumps({"event_id": event_id or uuid.uuid4().hex, "tracking_number": tracking,
                           "status": status, "address_hash": address_hash(address)}).encode()
        ts = timestamp if timestamp is not None else int(time.time())
        headers = {"X-Escrowlab-Timestamp": str(ts), "X-Escrowlab-Signature": sign(secret or self.secret, ts, body),
                   "Content-Type": "application/json"}
        return self.http.post(f"/webhooks/courier/{self.name}", content=body, headers=headers)

    def deliver(self, tracking: str, address: str) -> dict:
        response = self.event(tracking, "delivered", address)
        if response.status_code != 200:
            raise ApiError(response)
        return response.json()
