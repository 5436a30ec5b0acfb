"""The harness's driver for minimarket: ``--marketplace examples.minimarket.driver:Driver``.

A driver is the one class escrowlab needs to judge a marketplace. This one starts
minimarket as its own process against the cluster's hub LND (a fresh SQLite file
on each ``start``, the same one on ``restart``), and speaks minimarket's own HTTP
API, which is not the reference app's: an API key per user instead of logins,
``/orders/{id}/timeline``, ``/couriers/{name}/events`` for the webhook, and so on.
Like any driver it knows its marketplace only by that API; it imports none of it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import httpx

from escrow_protocol.actions import Action
from escrow_protocol.webhook import courier_body, courier_headers
from harness.actors import Party
from harness.driver import Answer, ApiError, Marketplace, Unsupported
from regtest_cluster.daemon import ProcessDaemon
from regtest_cluster.ports import PortAllocator
from regtest_cluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]  # the checkout: minimarket runs from it, not from an install
COURIERS = ("fastship", "slowpost")
# What minimarket can be asked for (its --help and escrow.py say the same)
PLANTED_BUGS = ("release_without_delivery", "double_payout")
FAULT_POINTS = ("after_settle", "after_payout_marker", "after_payout_sent")

# Each action of the escrow protocol as a minimarket request: method, path, body from the params.
ACTIONS = {
    Action.SHIP: ("POST", "/orders/{id}/ship", lambda p: {"courier": p.get("courier", "fastship"),
                                                         "tracking": p.get("tracking", "TRK")}),
    Action.CONFIRM: ("POST", "/orders/{id}/confirm", lambda p: None),
    Action.DISPUTE: ("POST", "/orders/{id}/dispute", lambda p: {"body": p.get("reason") or "not as described"}),
    Action.RULE: ("POST", "/orders/{id}/rule", lambda p: {"ruling": p["ruling"],
                                                         "buyer_share_pct": p.get("buyer_share_pct")}),
    Action.PAYOUT_INVOICE: ("POST", "/orders/{id}/payout-invoice",
                            lambda p: {"payment_request": p["payment_request"]}),
    Action.VIEW: ("GET", "/orders/{id}", lambda p: None),
}


def _answer(r: httpx.Response) -> Answer:
    try:
        body = r.json() if r.content else {}
    except ValueError:
        body = {"detail": r.text}
    code = body.get("code", "") if isinstance(body, dict) and r.status_code >= 300 else ""
    return Answer(r.status_code, code, body)


class Driver(Marketplace):
    name = "minimarket"
    # minimarket's own deliberate defects, and the scenario that must expose each (scenario run --all)
    planted_bugs = {"release_without_delivery": "release_after_delivery", "double_payout": "release_after_delivery"}

    def __init__(self, cluster, run_dir: Path) -> None:
        super().__init__(cluster, run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.port = PortAllocator().take()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=90)
        self.admin_key = secrets.token_urlsafe(24)
        self.couriers = {name: secrets.token_hex(16) for name in COURIERS}  # the couriers' webhook secrets
        self.settings: dict = {}
        self.starts = self.launches = 0
        self.state_dir = run_dir / "minimarket-0"
        self.daemon: ProcessDaemon | None = None
        self.admin: Party | None = None

    # --- requests
    def request(self, party, method: str, path: str, **kwargs) -> Answer:
        key = getattr(party, "auth", None) if party is not None else None
        return _answer(self.http.request(method, path, headers={"X-Api-Key": key} if key else {}, **kwargs))

    def call(self, party, method: str, path: str, **kwargs):
        answer = self.request(party, method, path, **kwargs)
        if not answer.ok:
            raise ApiError(answer, f"minimarket {method} {path}")
        return answer.body

    # --- lifecycle
    def start(self, settings: dict) -> None:
        if settings.get("planted_bug") not in (None, *PLANTED_BUGS):
            raise Unsupported(f"minimarket has no planted bug {settings['planted_bug']!r} "
                              f"(it has {', '.join(PLANTED_BUGS)})")
        self.settings = dict(settings)
        self.starts += 1
        self.state_dir = self.run_dir / f"minimarket-{self.starts}"  # a fresh SQLite file per start
        self._launch()
        self.admin = Party(self, "admin", ["admin"], auth=self.admin_key)
        self.admin.id = self.call(self.admin, "GET", "/me")["id"]

    def _launch(self, **extra) -> None:
        settings = {**self.settings, **extra}
        if set(settings.get("fault_points") or ()) - set(FAULT_POINTS):
            raise Unsupported(f"minimarket crashes only at {', '.join(FAULT_POINTS)}, "
                              f"not {settings['fault_points']}")
        hub = self.cluster.node("hub")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               "MINIMARKET_SETTINGS": json.dumps(settings), "MINIMARKET_ADMIN_KEY": self.admin_key,
               "MINIMARKET_COURIERS": json.dumps(self.couriers)}
        argv = [sys.executable, "-m", "examples.minimarket", "--port", str(self.port), "--state", str(self.state_dir),
                "--hub-rest", hub.rest_url, "--hub-macaroon", str(hub.macaroon_path), "--hub-cert", str(hub.tls_cert)]
        self.launches += 1
        self.daemon = ProcessDaemon(f"minimarket-{self.launches}", argv,
                                    self.run_dir / f"minimarket-{self.launches}.log", self.run_dir, env)
        self.daemon.start()

        def up() -> bool:
            self.daemon.check_alive()
            try:
                return self.http.get("/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, what="minimarket to answer /health")

    def restart(self, **settings) -> None:
        self.stop()
        self._launch(**settings)

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop(timeout=20)

    def close(self) -> None:
        self.stop()
        self.http.close()

    def kill(self) -> None:
        if self.daemon:
            self.daemon.kill()

    def running(self) -> bool:
        return self.daemon is not None and self.daemon.is_running()

    def wait_exit(self, timeout: float = 60) -> None:
        """Wait for minimarket to exit by itself (at a fault point)."""
        wait_for(lambda: not self.running(), timeout=timeout, what="minimarket to crash at its fault point")

    def rules(self) -> dict:
        return self.call(None, "GET", "/rules")

    # --- parties
    def register(self, party, address: str = "") -> None:
        roles = [r for r in party.roles if r in ("buyer", "seller")] or ["buyer"]
        made = self.call(None, "POST", "/users", json={"name": party.name, "roles": roles, "address": address})
        party.id, party.auth = made["id"], made["api_key"]

    def make_arbiter(self, party) -> None:
        self.call(self.admin, "POST", f"/users/{party.id}/roles", params={"role": "arbiter"})

    def bind_payout_node(self, party, node) -> None:
        self.call(party, "PUT", "/me/payout-node", json={
            "rest_url": node.rest_url, "pubkey": node.pubkey, "tls_cert_pem": node.tls_cert.read_text(),
            "macaroon_hex": (node.macaroon_path.parent / "invoice.macaroon").read_bytes().hex()})

    def courier_secret(self, courier: str) -> str:
        if courier not in self.couriers:
            raise Unsupported(f"minimarket knows the couriers {', '.join(COURIERS)}, not {courier!r}")
        return self.couriers[courier]

    # --- trade
    def list_item(self, seller, title: str, price_sats: int, stock: int = 10, mode: str = "ln_hold",
                  category: str = "electronics") -> dict:
        if mode != "ln_hold":
            raise Unsupported(f"minimarket serves ln_hold only, not {mode}")
        return self.call(seller, "POST", "/listings", json={"title": title, "price_sats": price_sats, "stock": stock})

    def place_order(self, buyer, listing_id: int, quantity: int = 1, **funding) -> dict:
        return self.call(buyer, "POST", "/orders", json={"listing_id": listing_id, "quantity": quantity})

    def attempt(self, party, action: str, order_id: int, **params) -> Answer:
        try:
            method, path, body = ACTIONS[Action(action)]
        except ValueError:
            raise Unsupported(f"no action {action!r} in the escrow protocol") from None
        payload = body(params)
        return self.request(party, method, path.format(id=order_id),
                            **({"json": payload} if payload is not None else {}))

    def courier_event(self, courier: str, tracking: str, status: str, address: str, *,
                      event_id: str | None = None, timestamp: int | None = None,
                      secret: str | None = None) -> Answer:
        body = courier_body(tracking, status, address, event_id)
        headers = courier_headers(secret or self.courier_secret(courier), body, timestamp)
        return _answer(self.http.post(f"/couriers/{courier}/events", content=body, headers=headers))

    def dispute_message(self, party, order_id: int, body: str) -> None:
        self.call(party, "POST", f"/orders/{order_id}/messages", json={"body": body})

    # --- reading
    def order(self, party, order_id: int) -> dict:
        return self.call(party, "GET", f"/orders/{order_id}")

    def timeline(self, party, order_id: int) -> list[dict]:
        return self.call(party, "GET", f"/orders/{order_id}/timeline")

    def notifications(self, party) -> list[dict]:
        return self.call(party, "GET", "/me/notifications")

    def orders(self, party, offset: int = 0, limit: int = 200) -> dict:
        return self.call(party, "GET", "/orders", params={"offset": offset, "limit": limit})

    def disputes(self, party) -> list[dict]:
        return self.call(party, "GET", "/disputes")
