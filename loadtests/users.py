"""The marketplace's Locust users, thin over ``MarketClient``.

One trade passes through several users of the same Locust process, by way of
the ``Board`` (gevent is cooperative, so plain deques are safe):

    Seller lists  ->  Buyer orders and pays the hold from its own LND
                  ->  Seller ships  ->  Courier posts the signed delivery
                  ->  Buyer confirms (or disputes, and an Arbiter rules)

The buyer's payment stays in flight until the hub settles the hold, so it
runs in its own greenlet; its end is the escrow's end (``ESCROW settled``).

Buyers and sellers keep their notification stream open, as a client app does
(``harness.sse.OrderFeed``, greenlets under Locust's gevent): a buyer's wait for
its payment to fund the order wakes on the stream's ``order.funded``, and reads
the order only when the stream said nothing for ``FALLBACK_S``. When the run
ends, what each stream sent is written to the plan's ``streams_file``, and the
oracle judges it against the inbox (I18): a stream that loses a notification
under load fails the run.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import gevent.pool
import httpx
from locust import FastHttpUser, between, task

from escrow_protocol.webhook import address_hash
from escrow_protocol.webhook import sign_courier as sign
from harness.sse import OrderFeed
from regtest_cluster.nodes.lnd import LndError, LndRest
from regtest_cluster.waiting import WaitTimeout

from .client import CallFailed, MarketClient

ADDRESS = "1 Load Street, Springfield"
WORDS = ("lamp", "radio", "camera", "bicycle", "guitar", "kettle", "watch", "drone")


@dataclass
class Board:
    """What the users of one Locust process hand each other."""

    listings: list[tuple[int, int]] = field(default_factory=list)          # (listing id, seller user id)
    to_ship: dict[int, collections.deque] = field(default_factory=lambda: collections.defaultdict(collections.deque))
    to_deliver: collections.deque = field(default_factory=collections.deque)  # (tracking, buyer key, order id)
    delivered: dict[str, collections.deque] = field(default_factory=lambda: collections.defaultdict(collections.deque))


BOARD = Board()
BATCH = 20  # parcels a seller ships, or the courier reports, in one task at most
PLAN: dict = {}   # set by the locustfile from --plan before any user starts
RNG = random.Random()  # seeded from the plan by the locustfile
TURNS: dict[str, itertools.count] = collections.defaultdict(itertools.count)  # see in_turn
FALLBACK_S = 2.0  # a wait the stream told nothing for this long reads the order, as the harness's do
STREAMS: list["Stream"] = []  # every trader's stream in this Locust process (see close_streams)


def in_turn(nodes: str) -> str:
    """The plan's next node of a kind (``buyer_nodes``, ``seller_nodes``), in turn, not at
    random: a soak's money all crosses the hub's channels to those nodes, and users that drew
    the same node exhausted its channel (two sellers on one 10M-sat channel, 18 of 30 buyers on
    one buyer's 8M sats of outbound liquidity)."""
    names = PLAN[nodes]
    return names[next(TURNS[nodes]) % len(names)]


def node_client(name: str) -> LndRest:
    node = json.loads(Path(PLAN["state_file"]).read_text())["nodes"][name]
    return LndRest(name, node["rest_url"], Path(node["macaroon"]).read_bytes().hex(), Path(node["tls_cert"]))


@dataclass
class Stream:
    """A trader's notification stream, on a connection of its own beside Locust's."""

    email: str
    http: httpx.Client
    token: str  # the trader's, read at each connect (a login replaces it)
    feed: OrderFeed = field(init=False)

    def __post_init__(self) -> None:
        self.feed = OrderFeed(self.http, lambda: self.token, self.email.split("@")[0])


def close_streams(grace_s: float = 5.0) -> None:
    """The run is over: give each trader's stream up to ``grace_s`` to send what its inbox shows
    now, close it, and append what it sent to the plan's ``streams_file`` (one JSON line a
    trader) for the oracle. The inbox's newest notification then is what the stream owed: the
    orders the drain ends afterwards notify a closed stream."""
    streams, STREAMS[:] = list(STREAMS), []

    def one(stream: Stream) -> str:
        try:
            inbox = stream.http.get("/me/notifications", params={"limit": 1},
                                    headers={"Authorization": f"Bearer {stream.token}"})
            inbox.raise_for_status()
            items = inbox.json()["items"]
            upto: int | None = items[0]["id"] if items else 0
            stream.feed.caught_up(upto, grace_s)  # or not: what it missed is I18's to say
        except (httpx.HTTPError, ValueError, KeyError):
            upto = None  # the inbox cannot be read: the stream cannot be judged
        finally:
            stream.feed.close()
            stream.http.close()
        return json.dumps({"email": stream.email, "after": stream.feed.after, "upto": upto,
                           "delivered": [[nid, kind, oid] for nid, (kind, oid)
                                         in sorted(stream.feed.delivered().items())]})

    lines = gevent.pool.Pool(20).map(one, streams)
    path = PLAN.get("streams_file")
    if path and lines:
        with open(path, "a") as f:  # one append a process: whole lines, even across processes
            f.write("".join(line + "\n" for line in lines))


class MarketUser(FastHttpUser):
    abstract = True
    wait_time = between(0.2, 1.0)
    roles: list[str] = []

    def on_start(self) -> None:
        self.market = MarketClient(self)
        self.email = f"{type(self).__name__.lower()}-{uuid.uuid4().hex[:10]}@load.example"
        self.password = "pw-" + uuid.uuid4().hex[:12]
        if self.roles:
            self.market.call("POST", "/auth/register", json={"email": self.email, "password": self.password,
                                                             "display_name": self.email[:20], "roles": self.roles},
                             auth=False)
            self.login()

    def login(self) -> None:
        tokens = self.market.call("POST", "/auth/login", json={"email": self.email, "password": self.password},
                                  auth=False)
        self.market.token = tokens["access_token"]
        self.user_id = self.market.call("GET", "/me")["id"]
        if getattr(self, "stream", None) is not None:
            self.stream.token = self.market.token

    def watch_stream(self) -> None:
        """Keep this trader's notification stream open from now on, as a client app does (it
        starts after notification 0: a new trader's stream owes every notification it gets)."""
        self.stream = Stream(self.email, httpx.Client(base_url=self.host, timeout=httpx.Timeout(10.0, read=None)),
                             self.market.token)
        STREAMS.append(self.stream)

    def bind_payout_node(self, name: str) -> None:
        """Let the hub ask this user's node for invoices: a seller's payouts, a buyer's refunds
        after the hub took custody (without it such a refund waits for an invoice from the buyer)."""
        node = json.loads(Path(PLAN["state_file"]).read_text())["nodes"][name]
        macaroon = (Path(node["macaroon"]).parent / "invoice.macaroon").read_bytes().hex()
        self.market.call("PUT", "/me/payout-node", json={"node_pubkey": node["pubkey"], "rest_url": node["rest_url"],
                                                         "macaroon_hex": macaroon,
                                                         "tls_cert_pem": Path(node["tls_cert"]).read_text()})

    def record_party(self, node: str) -> None:
        """Leave this trader's login for the oracle that checks every order once the run is over."""
        path = PLAN.get("parties_file")
        if path:
            line = json.dumps({"email": self.email, "password": self.password, "roles": self.roles, "node": node})
            with open(path, "a") as f:  # one short append per user: whole lines, even across processes
                f.write(line + "\n")


class Browser(MarketUser):
    """Search and listing views, anonymous."""

    weight = 1

    @task(3)
    def browse(self) -> None:
        page = self.market.call("GET", "/listings", params={"limit": 20}, auth=False)
        if page["items"]:
            listing = RNG.choice(page["items"])
            self.market.call("GET", f"/listings/{listing['id']}", name="/listings/[id]", auth=False)

    @task(2)
    def search(self) -> None:
        self.market.call("GET", "/listings", name="/listings?q", params={"q": RNG.choice(WORDS), "limit": 20},
                         auth=False)


class Buyer(MarketUser):
    """Orders, pays the hold invoice from its own node, confirms or disputes."""

    weight = 3
    roles = ["buyer"]

    def on_start(self) -> None:
        super().on_start()
        self.market.call("PUT", "/me/address", json={"address": ADDRESS})
        self.key = self.email
        name = in_turn("buyer_nodes")
        self.node = node_client(name)
        self.payments = gevent.pool.Group()
        self.bind_payout_node(name)
        self.record_party(name)
        self.watch_stream()

    def on_stop(self) -> None:
        # Trades still open when the run ends cannot finish (their sellers stop too):
        # their payments are abandoned, not failed, and their holds time out on the hub.
        self.payments.kill(block=True, timeout=5)
        self.node.close()

    @task(4)
    def trade(self) -> None:
        if not BOARD.listings:
            self.market.call("GET", "/listings", params={"limit": 20}, auth=False)
            return
        if len(self.payments) >= PLAN.get("open_trades_per_buyer", 3):
            self.settle()  # a buyer with enough trades open sees to them first, as a person would
            return
        listing_id, seller_id = RNG.choice(BOARD.listings)
        started = time.perf_counter()
        order = self.market.call("POST", "/orders", json={"listing_id": listing_id, "quantity": 1})
        self.stream.feed.expect(order["id"])  # placed with the stream open: it tells of every change
        self.payments.spawn(self._pay, order, started)
        if self._funded(order["id"], started) == "FUNDED":
            BOARD.to_ship[seller_id].append((order["id"], self.key))

    def _funded(self, order_id: int, started: float) -> str | None:
        """Wait for the order to be funded (or to expire unpaid) as a client app does: woken by
        its stream, reading the order only when the stream said nothing for ``FALLBACK_S``. The
        wait is reported as ``ESCROW funded``, from the order's placing; an order that expired
        unpaid, or is still unfunded at the deadline, as its failure."""
        states, feed = ("FUNDED", "EXPIRED"), self.stream.feed
        deadline = time.monotonic() + PLAN.get("funding_wait_s", 60)
        with feed.watching(order_id):
            while True:
                after = feed.mark()  # before the look: a state told after it is one wait() sees
                state = feed.latest(order_id)
                if state not in states:
                    state = feed.wait(order_id, states, after, max(0.0, min(deadline - time.monotonic(), FALLBACK_S)))
                if state is None:
                    state = self.market.call("GET", f"/orders/{order_id}", name="/orders/[id]")["state"]
                if state in states:
                    self.market.fire("ESCROW", "funded", (time.perf_counter() - started) * 1000,
                                     None if state == "FUNDED" else RuntimeError(f"order {order_id} expired unpaid"))
                    return state
                if time.monotonic() >= deadline:
                    self.market.fire("ESCROW", "funded", (time.perf_counter() - started) * 1000,
                                     WaitTimeout(f"order {order_id} not funded within "
                                                 f"{PLAN.get('funding_wait_s', 60)} s: it is {state}"))
                    return None

    def _pay(self, order: dict, started: float) -> None:
        request = order["hold"]["payment_request"]
        try:
            result = self.market.timed("LND", "pay hold", lambda: self.node.send_payment(
                request, timeout_s=120, fee_limit_sats=100))
        except LndError:
            return  # already reported as a failed LND call
        ok = result.get("status") == "SUCCEEDED"
        self.market.fire("ESCROW", "settled", (time.perf_counter() - started) * 1000,
                         None if ok else RuntimeError(f"payment {result.get('status')}: "
                                                      f"{result.get('failure_reason', '')}"))

    @task(2)
    def settle(self) -> None:
        done = BOARD.delivered[self.key]
        if not done:
            self.market.call("GET", "/orders", params={"limit": 10})
            return
        while done:  # everything that arrived since the last look
            order_id = done.popleft()
            if RNG.random() < PLAN.get("dispute_ratio", 0.0):
                self.market.call("POST", f"/orders/{order_id}/dispute", name="/orders/[id]/dispute",
                                 json={"reason": "the item does not match the listing"})
            else:
                self.market.call("POST", f"/orders/{order_id}/confirm", name="/orders/[id]/confirm")


class Seller(MarketUser):
    """Lists items and ships what was paid for."""

    fixed_count = 1
    roles = ["seller"]

    def on_start(self) -> None:
        super().on_start()
        name = in_turn("seller_nodes")
        self.bind_payout_node(name)
        self.record_party(name)
        self.watch_stream()
        for _ in range(3):
            self.list_item()

    @task(1)
    def list_item(self) -> None:
        listing = self.market.call("POST", "/listings", json={
            "title": f"{RNG.choice(WORDS)} {uuid.uuid4().hex[:6]}", "description": "load test item, as new",
            "category": "electronics", "price_sats": PLAN.get("price_sats", 1_000), "stock": 1_000_000})
        BOARD.listings.append((listing["id"], self.user_id))

    @task(10)
    def ship(self) -> None:
        # Everything paid for since the last look, up to a batch, as a shop ships: one parcel a
        # task kept the whole run's escrow rate at the one seller's pace (about 2.9/s, whatever
        # the number of buyers).
        queue = BOARD.to_ship[self.user_id]
        for _ in range(min(len(queue), BATCH)):
            order_id, buyer_key = queue.popleft()
            tracking = f"TRK{uuid.uuid4().hex[:12].upper()}"
            self.market.call("POST", f"/orders/{order_id}/ship", name="/orders/[id]/ship",
                             json={"courier": PLAN["courier"]["name"], "tracking_number": tracking})
            BOARD.to_deliver.append((tracking, buyer_key, order_id))


class Courier(MarketUser):
    """Posts HMAC-signed delivery events for shipped parcels."""

    fixed_count = 1
    wait_time = between(0.05, 0.3)

    @task
    def deliver(self) -> None:
        courier = PLAN["courier"]
        for _ in range(min(len(BOARD.to_deliver), BATCH)):  # every parcel delivered since the last look
            tracking, buyer_key, order_id = BOARD.to_deliver.popleft()
            body = json.dumps({"event_id": uuid.uuid4().hex, "tracking_number": tracking, "status": "delivered",
                               "address_hash": address_hash(ADDRESS)}).encode()
            ts = int(time.time())
            self.market.raw("POST", f"/webhooks/courier/{courier['name']}", name="/webhooks/courier/[name]",
                            data=body, headers={"X-Escrowlab-Timestamp": str(ts), "Content-Type": "application/json",
                                                "X-Escrowlab-Signature": sign(courier["secret"], ts, body)})
            BOARD.delivered[buyer_key].append(order_id)


class Arbiter(MarketUser):
    """Reads open disputes and rules on them (release to the seller)."""

    fixed_count = 1
    roles = ["buyer"]

    def on_start(self) -> None:
        super().on_start()
        admin = MarketClient(self)
        admin.token = admin.call("POST", "/auth/login", json=PLAN["admin"], auth=False)["access_token"]
        admin.call("POST", f"/admin/users/{self.user_id}/roles", name="/admin/users/[id]/roles",
                   json={"role": "arbiter", "grant": True})
        self.login()  # a fresh token carries the new role

    @task
    def rule(self) -> None:
        for dispute in self.market.call("GET", "/disputes")[:5]:
            try:
                self.market.call("POST", f"/orders/{dispute['order_id']}/dispute/ruling",
                                 name="/orders/[id]/dispute/ruling", json={"ruling": "release"})
            except CallFailed:
                pass  # another arbiter ruled first: already counted as a failed call


USERS = {"browser": Browser, "buyer": Buyer, "seller": Seller, "courier": Courier, "arbiter": Arbiter}
