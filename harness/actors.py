"""Synthetic marketplace parties, each with its own Lightning node where it has one.

They act only through a ``Marketplace`` driver (``harness.driver``), in the escrow
protocol's words. Given an httpx client instead of a driver, a party speaks the
reference app's HTTP API (``harness.http.HttpMarketplace``): a TestClient
in-process or a real client against `escrowlab app serve`."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from escrow_protocol.actions import Action
from harness.driver import Answer, ApiError, Marketplace
from harness.http import HttpMarketplace
from regtest_cluster.nodes.lnd import LndNode
from regtest_cluster.nodes.wallet import wallet

__all__ = ["ApiError", "Arbiter", "Buyer", "Courier", "Party", "PayoutHandIn", "Seller"]


@dataclass(eq=False)
class Party:
    """A registered user, acting through a marketplace driver."""

    market: Marketplace
    name: str
    roles: list[str]
    node: LndNode | None = None
    address: str = ""
    email: str = ""
    password: str = field(default_factory=lambda: "pw-" + uuid.uuid4().hex[:12])
    auth: object = None     # what the driver keeps to act as this party (a token)
    id: int = 0
    hands_in: bool = False  # hands in payout invoices from its wallet (one the marketplace cannot ask)

    def __post_init__(self) -> None:
        if not isinstance(self.market, Marketplace):  # an httpx client: the reference API over HTTP
            self.market = HttpMarketplace(self.market)
        self.email = self.email or f"{self.name}-{uuid.uuid4().hex[:6]}@example.com"

    @classmethod
    def register(cls, market: Marketplace, name: str, roles: list[str], node: LndNode | None = None,
                 address: str = "") -> "Party":
        party = cls(market, name, roles, node, address)
        party.market.register(party, address)
        return party

    def login(self) -> None:
        self.market.login(self)

    @property
    def token(self) -> str:
        return self.auth or ""

    # --- raw HTTP, for tests of the reference API itself (the harness acts through verbs)
    def call(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 204), auth: bool = True,
             **kwargs) -> dict:
        return self.market.call(self if auth else None, method, path, expect=expect, **kwargs)

    def attempt(self, method: str, path: str, **kwargs):
        """A request whose failure is the point: the HTTP response, whatever its status."""
        return self.market.raw(self, method, path, **kwargs)

    # --- the escrow protocol's actions
    def act(self, action: str, order_id: int, **params) -> Answer:
        """Try an action; a refusal is an answer, not an exception."""
        return self.market.attempt(self, action, order_id, **params)

    def do(self, action: str, order_id: int, **params) -> dict:
        """An action that must succeed."""
        answer = self.act(action, order_id, **params)
        if not answer.ok:
            raise ApiError(answer, f"{self.name}: {action} on order {order_id}")
        return answer.body

    def dispute(self, order_id: int, reason: str = "not as described") -> dict:
        return self.do(Action.DISPUTE, order_id, reason=reason)

    def bind_payout_node(self) -> None:
        """Let the hub ask this party's node for payout invoices (invoice macaroon only). A wallet
        the marketplace cannot ask (not LND) is not bound: its owner hands in an invoice for each
        payout due instead (``hands_in``; a scenario runs a ``PayoutHandIn`` for it)."""
        if not wallet(self.node).bindable:
            self.hands_in = True
            return
        self.market.bind_payout_node(self, self.node)

    def order(self, order_id: int) -> dict:
        return self.market.order(self, order_id)

    def wait_state(self, order_id: int, *states: str, timeout: float = 30) -> dict:
        try:
            return self.market.wait_order(self, order_id, states, timeout=timeout)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None


class Seller(Party):
    def list_item(self, title: str, price_sats: int, stock: int = 10, category: str = "electronics",
                  mode: str = "ln_hold") -> dict:
        return self.market.list_item(self, title, price_sats, stock, mode, category)

    def ship(self, order_id: int, courier: str, tracking: str) -> dict:
        return self.do(Action.SHIP, order_id, courier=courier, tracking=tracking)

    def payout_invoice(self, order_id: int, payment_request: str) -> dict:
        return self.do(Action.PAYOUT_INVOICE, order_id, payment_request=payment_request)


class Buyer(Party):
    def buy(self, listing_id: int, quantity: int = 1) -> dict:
        return self.market.place_order(self, listing_id, quantity)

    def try_buy(self, listing_id: int, quantity: int = 1) -> Answer:
        """An order that may be refused (stock, balance): the answer, not an exception."""
        try:
            return Answer(201, "", self.buy(listing_id, quantity))
        except ApiError as exc:
            return Answer(exc.status, exc.code, exc.problem)

    def pay(self, order: dict) -> threading.Thread:
        """Pay the hold invoice from this buyer's own node. The payment stays in
        flight until the hub settles or cancels, so it runs in a thread."""
        return self.pay_request(order["hold"]["payment_request"], f"pay-{order['id']}")

    def pay_request(self, request: str, name: str) -> threading.Thread:
        """Pay an invoice from this buyer's own node in a thread named ``name``; its final
        update lands in the thread's ``outcome``."""
        outcome: dict = {}

        def run():  # the node going away mid-payment is recorded (status ERROR), not raised
            outcome.update(wallet(self.node).pay(request, timeout_s=60, fee_limit_sats=100))

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.outcome = outcome  # type: ignore[attr-defined]
        thread.start()
        return thread

    def confirm(self, order_id: int) -> dict:
        return self.do(Action.CONFIRM, order_id)


class Arbiter(Party):
    def rule(self, order_id: int, ruling: str, buyer_share_pct: float | None = None) -> dict:
        return self.do(Action.RULE, order_id, ruling=ruling, buyer_share_pct=buyer_share_pct)


@dataclass
class Courier:
    """A logistics company posting signed tracking events (the protocol's webhook)."""

    market: Marketplace
    name: str
    secret: str | None = None   # None: the driver knows the courier's secret

    def __post_init__(self) -> None:
        if not isinstance(self.market, Marketplace):  # an httpx client: the reference API over HTTP
            self.market = HttpMarketplace(self.market)

    def event(self, tracking: str, status: str, address: str, event_id: str | None = None,
              timestamp: int | None = None, secret: str | None = None) -> Answer:
        return self.market.courier_event(self.name, tracking, status, address, event_id=event_id,
                                         timestamp=timestamp, secret=secret or self.secret)

    def deliver(self, tracking: str, address: str) -> dict:
        answer = self.event(tracking, "delivered", address)
        if not answer.ok:
            raise ApiError(answer, f"courier {self.name}: delivered {tracking}")
        return answer.body


class PayoutHandIn:
    """A party whose wallet the marketplace cannot ask for invoices (``Party.hands_in``) hands
    one in for each payout due to it, as the user of such a wallet does when told a payout
    waits: an invoice for the amount due from its own node, for a payout that has none or
    whose last payment failed. Runs beside a story until ``stop``."""

    def __init__(self, party: Party, order_ids: list[int], interval: float = 0.3,
                 say=lambda *_a: None) -> None:
        self.party, self.order_ids, self.interval, self.say = party, order_ids, interval, say
        self.wallet = wallet(party.node)
        self.handed: set[tuple] = set()  # (order, beneficiary, payment hash, status) of each payout answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hand-in-{party.name}", daemon=True)
        self._thread.start()

    def _due(self, order: dict) -> list[dict]:
        role = next((r for r in ("seller", "buyer") if order.get(f"{r}_id") == self.party.id), None)
        return [p for p in order.get("payouts", []) if p["beneficiary"] == role and p["status"] in ("PENDING", "FAILED")
                and (order["id"], role, p["payment_hash"], p["status"]) not in self.handed
                and (p["payment_hash"] is None or p["status"] == "FAILED")]

    def step(self) -> None:
        for oid in list(self.order_ids):
            try:
                order = self.party.order(oid)
            except ApiError:
                continue  # not this party's order
            for p in self._due(order):
                invoice = self.wallet.invoice(p["amount_sats"], memo=f"escrowlab payout order {oid}")
                answer = self.party.act(Action.PAYOUT_INVOICE, oid, payment_request=invoice["payment_request"])
                self.say("%s hands in an invoice for the %s sats payout of order %s from its %s wallet: %s",
                         self.party.name, p["amount_sats"], oid, self.wallet.impl.upper(),
                         "accepted" if answer.ok else f"refused ({answer.status} {answer.code})")
                if answer.ok:
                    self.handed.add((oid, p["beneficiary"], p["payment_hash"], p["status"]))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a node or the app restarting mid-story: try again next round
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
