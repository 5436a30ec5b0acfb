"""Drivers for the reference marketplace: its HTTP API, and the app as a process.

``HttpMarketplace`` speaks the reference app's API over any httpx client (a real one,
or a TestClient in-process). ``ReferenceMarketplace`` adds the lifecycle: it starts
the app as its own process (``escrowlab app serve``) against the cluster, a fresh
database per scenario, so faults can stop, kill and restart it. Neither imports the
app: they know it by its API, as a user's driver knows theirs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from escrow_protocol.actions import Action
from escrow_protocol.webhook import courier_body, courier_headers
from harness.driver import Answer, ApiError, Marketplace, Streamed, Unsupported
from harness.sse import OrderFeed
from regtest_cluster import waiting
from regtest_cluster.daemon import ProcessDaemon, start_with_port_retry
from regtest_cluster.ports import PortAllocator
from regtest_cluster.state import write_state
from regtest_cluster.waiting import WaitTimeout, wait_for

ADMIN = ("admin@example.com", "scenario-admin-password")

# Each action of the protocol as a request of the reference API: method, path, body from params.
ACTION_REQUESTS: dict[str, tuple[str, str, Any]] = {
    Action.SHIP: ("POST", "/orders/{id}/ship", lambda p: {"courier": p.get("courier", "fastship"),
                                                          "tracking_number": p.get("tracking", "TRK")}),
    Action.CONFIRM: ("POST", "/orders/{id}/confirm", lambda p: None),
    Action.DISPUTE: ("POST", "/orders/{id}/dispute", lambda p: {"reason": p.get("reason", "not as described")}),
    Action.RULE: ("POST", "/orders/{id}/dispute/ruling",
                  lambda p: {"ruling": p["ruling"], **({"buyer_share_pct": p["buyer_share_pct"]}
                                                       if p.get("buyer_share_pct") else {})}),
    Action.PAYOUT_INVOICE: ("POST", "/orders/{id}/payout-invoice",
                            lambda p: {"payment_request": p["payment_request"]}),
    Action.VIEW: ("GET", "/orders/{id}", lambda p: None),
}


def settings_env(settings: dict) -> dict[str, str]:
    """Settings as the reference app reads them: ESCROWLAB_<NAME>, JSON for lists and dicts."""
    return {f"ESCROWLAB_{k.upper()}": json.dumps(v) if isinstance(v, (list, dict)) else str(v)
            for k, v in settings.items()}


def _answer(response: httpx.Response) -> Answer:
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {"detail": response.text}
    code = body.get("code", "") if isinstance(body, dict) and response.status_code >= 300 else ""
    return Answer(response.status_code, code, body, dict(response.headers))


class HttpMarketplace(Marketplace):
    """The reference app's API over an httpx client (no lifecycle: the app is already up).

    ``push_waits``: a wait for an order's state (``wait_order``) wakes on the party's
    notification stream (harness/sse.py) rather than asking for the order again and again.
    It needs a client that streams (not an in-process TestClient, which reads a whole body), and
    each party's open stream holds one of the client's connections."""

    name = "reference"
    FALLBACK_S = 2.0  # a pushed wait still asks for the order this often

    def __init__(self, http: httpx.Client, cluster=None, run_dir: Path | None = None, *, admin=None,
                 courier_secrets: dict[str, str] | None = None, push_waits: bool = False) -> None:
        super().__init__(cluster, run_dir or Path("."))
        self.http = http
        self.admin = admin
        self.courier_secrets = courier_secrets or {}
        self.push_waits = push_waits
        self._feeds: dict[int, OrderFeed] = {}  # by id(party)
        self._feeds_lock = threading.Lock()
        self.order_reads = 0  # GET /orders/{id}, for the benchmarks' reads per escrow
        # pushed waits that only the fallback read ended: the order had reached the state, and its
        # party's stream had not said so within FALLBACK_S (a notification lost, or very late)
        self.unpushed_waits = 0
        self._reads_lock = threading.Lock()  # apart: a feed is opened under _feeds_lock, by a request

    # --- raw requests (for this driver, and for tests of the reference API itself)
    def raw(self, party, method: str, path: str, *, headers: dict | None = None, **kwargs) -> httpx.Response:
        """The HTTP response itself, as this party (None: unauthenticated)."""
        headers = dict(headers or {})
        token = getattr(party, "auth", None) if party is not None else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def request(self, party, method: str, path: str, **kwargs) -> Answer:
        return _answer(self.raw(party, method, path, **kwargs))

    def call(self, party, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 204), **kwargs):
        answer = self.request(party, method, path, **kwargs)
        if answer.status not in ((expect,) if isinstance(expect, int) else expect):
            raise ApiError(answer, f"{method} {path}")
        return answer.body

    # --- lifecycle
    def rules(self) -> dict:
        return self.call(None, "GET", "/rules")

    def running(self) -> bool:
        try:
            return self.http.get("/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def work_counters(self) -> dict:
        """The answering process's counters from ``/health`` (with several app processes, one
        process's, not their sum)."""
        return dict(self.http.get("/health", timeout=10).json().get("counters", {}))

    # --- parties
    def register(self, party, address: str = "") -> None:
        self.call(None, "POST", "/auth/register", json={"email": party.email, "password": party.password,
                                                        "display_name": party.name, "roles": party.roles},
                  expect=201)
        self.login(party)
        if address:
            self.call(party, "PUT", "/me/address", json={"address": address})

    def login(self, party) -> None:
        tokens = self.call(None, "POST", "/auth/login", json={"email": party.email, "password": party.password})
        party.auth = tokens["access_token"]
        party.id = self.call(party, "GET", "/me")["id"]

    def make_arbiter(self, party) -> None:
        self.call(self.admin, "POST", f"/admin/users/{party.id}/roles", json={"role": "arbiter", "grant": True})

    def bind_payout_node(self, party, node) -> None:
        macaroon = (node.macaroon_path.parent / "invoice.macaroon").read_bytes().hex()
        self.call(party, "PUT", "/me/payout-node", json={"node_pubkey": node.pubkey, "rest_url": node.rest_url,
                                                         "macaroon_hex": macaroon,
                                                         "tls_cert_pem": node.tls_cert.read_text()})

    # --- trade
    def list_item(self, seller, title: str, price_sats: int, stock: int = 10, mode: str = "ln_hold",
                  category: str = "electronics") -> dict:
        return self.call(seller, "POST", "/listings", expect=201,
                         json={"title": title, "description": f"{title}, as new", "category": category,
                               "price_sats": price_sats, "stock": stock, "escrow_mode": mode})

    def place_order(self, buyer, listing_id: int, quantity: int = 1, **funding) -> dict:
        feed = self.feed(buyer) if self.push_waits else None  # open before: it tells of the order from its start
        order = self.call(buyer, "POST", "/orders", json={"listing_id": listing_id, "quantity": quantity, **funding},
                          expect=201)
        if feed is not None:
            feed.expect(order["id"])
        return order

    def attempt(self, party, action: str, order_id: int, **params) -> Answer:
        try:
            method, path, body = ACTION_REQUESTS[Action(action)]
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
        return _answer(self.http.post(f"/webhooks/courier/{courier}", content=body, headers=headers))

    def dispute_message(self, party, order_id: int, body: str) -> None:
        self.call(party, "POST", f"/orders/{order_id}/dispute/messages", json={"body": body}, expect=(200, 201))

    # --- reading
    def order(self, party, order_id: int) -> dict:
        with self._reads_lock:
            self.order_reads += 1
        return self.call(party, "GET", f"/orders/{order_id}")

    def wait_order(self, party, order_id: int, states: tuple[str, ...], timeout: float = 30,
                   view: bool = True) -> dict:
        if not self.push_waits:
            return super().wait_order(party, order_id, states, timeout=timeout, view=view)
        feed = self.feed(party)
        deadline = time.monotonic() + timeout * waiting.TIMEOUT_FACTOR
        with feed.watching(order_id):
            fell_back = False
            # A stream that tells of this order from its first change on (told to both parties)
            # knows its state: what it told last, and a read would only say it again. Else the
            # changes may predate the stream: ask first.
            read = not feed.knows(order_id)
            while True:
                after = feed.mark()  # before the read: a change after it is told after the mark
                if not read:
                    known = feed.latest(order_id)
                    if known in states and not view:
                        return {"id": order_id, "state": known}
                    read = known in states  # the view is wanted: read it
                if read:
                    last = self.order(party, order_id)
                    if last["state"] in states:
                        if fell_back:
                            with self._reads_lock:
                                self.unpushed_waits += 1
                        return last
                    if getattr(party, "id", None) not in (last.get("buyer_id"), last.get("seller_id")):
                        # the app tells an order's changes to its buyer and seller only (an arbiter or
                        # the admin would wait for the fallback each time): ask instead
                        left = max(0.0, deadline - time.monotonic()) / waiting.TIMEOUT_FACTOR
                        return super().wait_order(party, order_id, states, timeout=left, view=view)
                left = deadline - time.monotonic()
                if left <= 0:
                    last = self.order(party, order_id)
                    raise WaitTimeout(f"order {order_id} in {'/'.join(states)}: not within {timeout:g} s; "
                                      f"order was {last.get('state')}, payouts {last.get('payouts')}")
                told = feed.wait(order_id, states, after, min(left, self.FALLBACK_S))
                if told and not view:
                    return {"id": order_id, "state": told}
                fell_back = told is None
                read = True  # the view of a told state, or the fallback's look

    def watch(self, party) -> None:
        self.feed(party)

    def streamed(self, party, upto: int, grace: float = 5.0) -> Streamed | None:
        with self._feeds_lock:
            feed = self._feeds.get(id(party))
        if feed is None:
            return None
        feed.caught_up(upto, grace)  # or not: what it missed is I18's to say
        return Streamed(feed.after, feed.delivered())

    def subscribe_webhook(self, party, url: str) -> str:
        return self.call(party, "POST", "/me/webhooks", json={"url": url}, expect=201)["secret"]

    def stream_away(self, party):
        return self.feed(party).away()

    def feed(self, party) -> OrderFeed:
        """The party's notification stream, opened at its first pushed wait."""
        with self._feeds_lock:
            feed = self._feeds.get(id(party))
            if feed is None:  # from now on: what was told before is history, not news
                newest = self.call(party, "GET", "/me/notifications", params={"limit": 1})["items"]
                feed = self._feeds[id(party)] = OrderFeed(self.http, lambda: getattr(party, "auth", None),
                                                          getattr(party, "name", "party"),
                                                          after=newest[0]["id"] if newest else 0)
            return feed

    def close(self) -> None:
        self.close_feeds()

    def close_feeds(self) -> None:
        with self._feeds_lock:
            feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            feed.close()

    def timeline(self, party, order_id: int) -> list[dict]:
        return self.call(party, "GET", f"/orders/{order_id}/events")

    def notifications(self, party) -> list[dict]:
        items: list[dict] = []
        while True:  # page by page: a load run's trader has thousands
            page = self.call(party, "GET", "/me/notifications", params={"limit": 200, "offset": len(items)})
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                return items

    def orders(self, party, offset: int = 0, limit: int = 200) -> dict:
        return self.call(party, "GET", "/orders", params={"limit": limit, "offset": offset})

    def disputes(self, party) -> list[dict]:
        return self.call(party, "GET", "/disputes")

    # --- on-chain multisig
    def set_onchain_keys(self, party, key: str, timeout_key: str | None = None) -> dict:
        return self.call(party, "PUT", "/me/onchain-keys",
                         json={"key": key, **({"timeout_key": timeout_key} if timeout_key else {})})

    def escrow(self, party, order_id: int) -> dict:
        return self.call(party, "GET", f"/orders/{order_id}/escrow")

    def pending_psbt(self, party, order_id: int) -> dict | None:
        answer = self.request(party, "GET", f"/orders/{order_id}/psbt")
        return answer.body if answer.status == 200 else None

    def submit_psbt(self, party, order_id: int, psbt: str) -> dict:
        return self.call(party, "POST", f"/orders/{order_id}/psbt", json={"psbt": psbt})

    # --- custodial
    def wallet(self, party) -> dict:
        return self.call(party, "GET", "/wallet")

    def withdrawals(self, party) -> dict:
        return self.call(party, "GET", "/wallet/withdrawals")

    def ln_deposit(self, party, amount_sats: int) -> dict:
        return self.call(party, "POST", "/wallet/deposits/ln", json={"amount_sats": amount_sats}, expect=201)

    def withdraw_ln(self, party, payment_request: str, key: str | None = None) -> Answer:
        return self.request(party, "POST", "/wallet/withdrawals/ln", json={"payment_request": payment_request},
                            headers={"Idempotency-Key": key} if key else {})

    def withdraw_onchain(self, party, address: str, amount_sats: int, key: str | None = None) -> Answer:
        return self.request(party, "POST", "/wallet/withdrawals/onchain",
                            json={"address": address, "amount_sats": amount_sats},
                            headers={"Idempotency-Key": key} if key else {})

    def ledger(self, admin) -> dict | None:
        answer = self.request(admin, "GET", "/admin/ledger")
        return answer.body if answer.status == 200 else None

    def reconcile(self, admin) -> dict:
        return self.call(admin, "GET", "/admin/reconcile")

    def courier_secret(self, courier: str) -> str:
        if courier not in self.courier_secrets:
            raise Unsupported(f"this driver was not given courier {courier!r}'s secret")
        return self.courier_secrets[courier]


class ReferenceMarketplace(HttpMarketplace):
    """The reference app as its own process on the cluster: a fresh database per start,
    stop/kill/restart on the same database, the bootstrap admin logged in. With ``processes``
    above 1 it serves as that many processes on its port (``app serve --processes``). With
    ``push_waits`` its waits wake on the parties' notification streams (``bench escrow`` does
    this); by default they ask again and again, as for a marketplace that does not push: in the
    scenario catalogue the streams saved no time (its waits are a tenth of a second or two)."""

    def __init__(self, cluster, run_dir: Path, processes: int = 1, push_waits: bool = False) -> None:
        self.processes = processes
        self.port = PortAllocator().take()
        # no cap on connections: each party's open stream holds one (httpx's default cap is 100)
        super().__init__(httpx.Client(base_url=self.url, timeout=60, limits=httpx.Limits(max_connections=None)),
                         cluster, run_dir, push_waits=push_waits)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = run_dir / "cluster.json"
        write_state(self.state_file, cluster)
        self.data_dir = run_dir / "app"
        self.daemon: ProcessDaemon | None = None
        self.settings: dict = {}
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, settings: dict) -> None:
        self.settings = dict(settings)
        self._launch()
        from harness.actors import Party  # the admin is a party like the others

        self.admin = Party(self, "admin", ["admin"], email=ADMIN[0], password=ADMIN[1])
        self.login(self.admin)

    def _launch(self, **extra) -> None:
        # a new instance token each start: /health must echo it (see _serve)
        settings = {**self.settings, **extra, "data_dir": str(self.data_dir), "instance": uuid.uuid4().hex,
                    "bootstrap_admin_email": ADMIN[0], "bootstrap_admin_password": ADMIN[1]}
        if self.processes > 1:
            settings["processes"] = self.processes
        env = {**os.environ, **settings_env(settings)}
        def repick() -> None:  # another process (a node of a cluster starting beside) took the port
            self.port = PortAllocator().take()
            self.http.base_url = self.url

        start_with_port_retry(lambda: self._serve(env), repick)

    def _serve(self, env: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "escrowlab", "app", "serve", "--state-file", str(self.state_file),
                "--port", str(self.port)]
        self.starts += 1
        self.daemon = ProcessDaemon(f"app-{self.starts}", argv, self.run_dir / f"app-{self.starts}.log",
                                    self.run_dir, env)
        self.daemon.start()

        instance = env["ESCROWLAB_INSTANCE"]

        def healthy() -> bool:
            # Ours, not another app answering on the port: a port is picked free, but another
            # process may bind it before this app does. Then this app dies of the clash
            # (check_alive raises, and the port is picked again) while the other one answers.
            self.daemon.check_alive()
            try:
                answer = self.http.get("/health", timeout=2)
            except httpx.HTTPError:
                return False
            body = _answer(answer).body
            return answer.status_code == 200 and isinstance(body, dict) and body.get("instance") == instance

        wait_for(healthy, timeout=60, what="the marketplace to answer /health")

    def restart(self, **settings) -> None:
        if self.daemon and self.daemon.is_running():
            self.daemon.stop(timeout=20)
        self._launch(**settings)

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop(timeout=20)

    def close(self) -> None:
        self.close_feeds()
        self.stop()
        self.http.close()

    def kill(self) -> None:
        if self.daemon:
            self.daemon.kill()

    def running(self) -> bool:
        return self.daemon is not None and self.daemon.is_running()

    def wait_exit(self, timeout: float = 60) -> None:
        """Wait for the app to die by itself (a crash point)."""
        wait_for(lambda: not self.daemon.is_running(), timeout=timeout, what="the app to crash at its fault point")

    def secrets(self) -> dict:
        return json.loads((self.data_dir / "app-secrets.json").read_text())

    def courier_secret(self, courier: str) -> str:
        return self.secrets()["courier_secrets"][courier]
