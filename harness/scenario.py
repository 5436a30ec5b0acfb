"""The scenario base class: a fixed lifecycle, configure → setup → run → check → teardown.

The base class owns setup and teardown, so a scenario cannot forget them. A
scenario narrates its story with ``self.log.info`` and splits a long flow
into named steps; its decisions (amounts, who buys, fault points) come from
``self.rng``, seeded, so a failure replays with ``--seed``.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from dataclasses import dataclass, field

from harness import evidence, oracle
from harness.actors import Party, PayoutHandIn
from harness.driver import Unsupported
from harness.funding import FUNDING
from harness.model import TERMINAL, Model
from harness.webhooks import WebhookReceiver
from harness.world import World


@dataclass
class StepLog:
    at: float
    message: str


@dataclass
class ScenarioResult:
    name: str
    seed: int
    mode: str
    passed: bool
    duration_s: float
    violations: list[oracle.Violation] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    error: str | None = None
    steps: list[StepLog] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    balances: dict = field(default_factory=dict)
    planted_bug: str | None = None
    # invariant -> how many applicable checks it made (0: nothing in this story exercised it)
    exercised: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None    # the marketplace lacks a feature the story needs (driver: Unsupported)
    hold_cltv: int | None = None  # the largest CLTV of the hold invoices the marketplace issued in the story


class _Narrator(logging.LoggerAdapter):
    """``log.info`` for stories: every step goes to the report, whatever the log level."""

    def __init__(self, name: str, sink: list[StepLog]) -> None:
        super().__init__(logging.getLogger(f"escrowlab.scenario.{name}"), {})
        self.sink = sink

    def info(self, msg, *args, **kwargs):
        self.sink.append(StepLog(time.time(), str(msg) % args if args else str(msg)))
        super().info(msg, *args, **kwargs)


class Scenario:
    """Subclass, set ``name`` and ``summary``, and write ``run``."""

    name = ""
    summary = ""
    modes: tuple[str, ...] = ("ln_hold",)
    fresh_cluster = False          # the scenario stops, kills or restarts nodes
    settings: dict = {}            # app settings for this scenario
    anchors: tuple[str, ...] = ()  # failure modes from the escrow anchors it covers (F1, F9, ...)
    adversaries = True             # probe what the model forbids at each state the story reaches
    needs = ""                     # what the cluster must have beyond the hub topology (else: skipped)
    # Each party's notification stream is open from the moment the story takes the party on, and
    # I18 judges what it sent against the party's inbox (where the driver reads a stream).
    watch_streams = True
    # Each party's webhook is subscribed to the harness's loopback receiver as the story takes the
    # party on, and I18 judges what arrived, signed, against the party's inbox (where the
    # marketplace sends webhooks).
    watch_webhooks = True

    def __init__(self, world: World, seed: int, mode: str | None = None, planted_bug: str | None = None) -> None:
        self.world = world
        self.seed = seed
        self.mode = mode or self.modes[0]
        self.planted_bug = planted_bug
        self.rng = random.Random(f"{self.name}:{seed}")
        self.steps: list[StepLog] = []
        self.log = _Narrator(self.name, self.steps)
        self.orders: list[int] = []
        self.holds: list[str] = []
        self.payments: dict[int, object] = {}
        self.parties: list[Party] = []
        self._teardowns: list = []
        self._probed: set[tuple[int, str]] = set()
        self._probe_findings: list[oracle.Violation] = []
        self._model: Model | None = None
        self._stranger: Party | None = None
        self._prober_arbiter: Party | None = None
        self.cx = oracle.Context(settings={}, user_nodes={})
        self.webhooks: WebhookReceiver | None = None

    # --- lifecycle, owned here
    def execute(self) -> ScenarioResult:
        started = time.time()
        result = ScenarioResult(self.name, self.seed, self.mode, False, 0.0, planted_bug=self.planted_bug,
                                steps=self.steps)
        try:
            self._setup()
            try:
                self.run()
            except Unsupported:
                raise  # the marketplace lacks what the story needs: skipped, below
            except Exception as exc:  # the story broke; node truth is still checked below
                result.error = f"{type(exc).__name__}: {exc}"
                self.log.info("the story failed: %s", result.error)
            if not self.world.market.running():
                self.world.restart_app()  # the oracle reads the app's claims through its driver
            result.violations, result.checked, result.orders, result.balances = self._check(started)
            result.hold_cltv = max((int(oe.payment_request["cltv_expiry"]) for oe in self.evidence.orders.values()
                                    if oe.payment_request), default=None)
            result.exercised = self.exercised
            result.passed = not result.violations and result.error is None
        except Unsupported as exc:  # not a failure of the marketplace: a story it cannot take part in
            result.skipped, result.passed = str(exc), True
            self.log.info("skipped: %s", exc)
        except Exception as exc:  # setup or evidence failed: nothing to judge
            result.error = result.error or f"{type(exc).__name__}: {exc}"
            self.log.info("failed: %s\n%s", result.error, traceback.format_exc(limit=8))
        finally:
            self._teardown()
            result.duration_s = round(time.time() - started, 2)
        return result

    def configure(self) -> dict:
        """App settings for this run; override to change them from the seed."""
        extra = {"planted_bug": self.planted_bug} if self.planted_bug else {}
        return {**self.settings, **extra}

    def _setup(self) -> None:
        settings = self.configure()
        self.log.info("starting the marketplace (seed %s)", self.seed)
        self.world.start_app(settings)
        # The rules as the marketplace reports them: the oracle judges by these, not by defaults
        self.cx.settings = {**self.world.market.rules(), "_start": time.time()}
        cancelled = evidence.quiesce(self.world.cluster)
        if cancelled:
            self.log.info("cancelled %d hold(s) an earlier marketplace left accepted: %s", len(cancelled),
                          ", ".join(cancelled))
        self.balances_before = evidence.channel_balances(self.world.cluster)
        self.started_at = time.time()
        if self.watch_webhooks:
            self.webhooks = WebhookReceiver()
        self.setup()

    def setup(self) -> None:
        """Create the parties; override for a different cast."""

    def run(self) -> None:
        raise NotImplementedError

    def _check(self, started: float):
        self.log.info("checking the invariants on node truth")
        for p in self.parties:
            if p.node is not None:
                self.cx.user_nodes[p.id] = p.node.name
        ev = self.evidence = evidence.gather(self.world, self.orders, self.parties, self.balances_before,
                                             self.started_at, webhooks=self.webhooks)
        found = oracle.check(ev, self.cx)
        self.exercised = oracle.exercised(ev, self.cx)
        if self._model is None:
            self._model = Model(self.cx.settings)
        audit = [oracle.Violation(f.rule, f.order, f.message) for oid, oe in ev.orders.items()
                 for f in self._model.audit(oid, oe.order, oe.events)]  # deadlines, guardian, outcomes
        self.exercised.update(self._model.counts())  # the model's judgements: adversaries and audit
        violations = [v for vs in found.values() for v in vs] + self._probe_findings + audit
        orders = [{"id": oid, "state": oe.order["state"], "price_sats": oe.order["price_sats"],
                   "invoice": (oe.invoice or {}).get("state", "GONE"),
                   "timeline": [(e["event"], e["to_state"], e["actor"], e["height"]) for e in oe.events]}
                  for oid, oe in ev.orders.items()]
        deltas = {n: ev.balances_after[n] - ev.balances_before[n] for n in ev.balances_after}
        return violations, list(found), orders, {"before": ev.balances_before, "after": ev.balances_after,
                                                 "delta": deltas}

    def _teardown(self) -> None:
        self.world.stop_app()
        if self.webhooks is not None:
            self.webhooks.close()
        hub = self.world.cluster.node("hub").rest
        for payment_hash in self.holds:  # leave nothing held in the shared cluster
            try:
                if hub.lookup_invoice(bytes.fromhex(payment_hash))["state"] in ("OPEN", "ACCEPTED"):
                    hub.cancel_invoice(bytes.fromhex(payment_hash))
            except Exception:  # noqa: BLE001 - gone already
                pass
        for thread in self.payments.values():
            thread.join(30)
        for fn in self._teardowns:
            fn()
        self.teardown()

    def teardown(self) -> None:
        """Undo what the scenario did to the shared cluster (restart a node, ...)."""

    # --- helpers for stories
    def track(self, party: Party) -> Party:
        self.parties.append(party)
        if self.watch_streams:
            try:
                self.world.market.watch(party)
            except Unsupported:  # a marketplace that pushes nothing: its inbox alone is judged
                pass
        if self.webhooks is not None and not self.webhooks.watched(party.id):
            try:
                secret = self.world.market.subscribe_webhook(party, self.webhooks.url(party.id))
            except Unsupported:  # a marketplace that sends no webhooks
                pass
            else:  # after subscribing: what was told before is not owed to the endpoint
                inbox = self.world.market.notifications(party)
                self.webhooks.expect(party.id, secret, after=max((n.get("id") or 0 for n in inbox), default=0))
        if party.hands_in:  # a wallet the marketplace cannot ask: its owner hands in payout invoices
            self.on_teardown(PayoutHandIn(party, self.orders, say=self.log.info).stop)
        return party

    def price(self, low: int = 10_000, high: int = 60_000) -> int:
        return self.rng.randrange(low, high, 1000)

    def buyer(self, node: str = "buyer1", bind: bool = False):
        return self.track(self.world.buyer(node, bind))

    def seller(self, node: str = "seller1", bind: bool = True):
        return self.track(self.world.seller(node, bind))

    def arbiter(self, name: str = "arbiter"):
        return self.world.arbiter(name)

    def order_unpaid(self, buyer, seller, price: int | None = None) -> dict:
        listing = seller.list_item(f"item-{self.rng.randrange(10**6)}", price or self.price())
        order = buyer.buy(listing["id"])
        self.orders.append(order["id"])
        self.holds.append(order["hold"]["payment_hash"])
        return order

    @property
    def funding(self):
        """How this run's escrow mode funds orders and sees outcomes through (harness.funding)."""
        return FUNDING[self.mode]

    def place(self, buyer, seller, price: int | None = None) -> dict:
        """List an item in this run's escrow mode, buy it and fund it from the buyer's own
        node or wallet; returns it FUNDED."""
        return self.funding.place(self, buyer, seller, price or self.price(*self.funding.prices))

    def outcome(self, party, order: dict, *states: str, timeout: float = 30) -> dict:
        """Wait for one of ``states``, doing what the mode asks of the parties on the way
        (the payee co-signs an on-chain spend); on timeout the order as it is."""
        return self.funding.outcome(self, party, order, states, timeout)

    def on_teardown(self, fn) -> None:
        self._teardowns.append(fn)

    def settle_on(self, party, order: dict, *states: str, timeout: float = 30) -> dict:
        """Wait for one of ``states``; on timeout return the order as it is (the oracle judges).
        Either way, the adversaries probe the state it is in."""
        try:
            reached = party.wait_state(order["id"], *states, timeout=timeout)
        except AssertionError as exc:
            self.log.info("not reached: %s", exc)
            reached = party.order(order["id"])
        self.probe(reached)
        return reached

    # --- adversaries: what the model forbids, tried at every state a story passes through
    def probe(self, order: dict) -> None:
        """Every relation tries, once per state an order reaches, what the model of the rules
        forbids it there (a stranger or the admin releasing, the seller confirming, the buyer
        ruling, shipping twice, ...). A forbidden request the marketplace accepts is a
        finding; refused ones leave the story untouched."""
        if not self.adversaries or order.get("state") in TERMINAL or (order["id"], order["state"]) in self._probed:
            return
        self._probed.add((order["id"], order["state"]))
        if self._model is None:
            self._model = Model(self.cx.settings)
        disputed = bool(order.get("disputed"))
        params = {"ship": {"courier": "fastship", "tracking": f"PROBE-{self.seed}-{order['id']}-{len(self._probed)}"},
                  "confirm": {}, "dispute": {"reason": "probe"}, "rule": {"ruling": "release"}}
        for rel, party in self._probers(order):
            for action in (("confirm", "rule", "ship") if rel in ("stranger", "admin", "arbiter") else params):
                verdict = self._model.may(rel, action, order["state"], disputed, params[action])
                if verdict.allowed is not False:
                    continue
                answer = party.act(action, order["id"], **params[action])
                if answer.ok:
                    self.log.info("adversary: %s by the %s in %s was accepted", action, rel, order["state"])
                    self._probe_findings.append(oracle.Violation(
                        verdict.rule, order["id"], f"{action} by the {rel} in {order['state']} was accepted "
                                                   f"({answer.status}); {verdict.why}"))

    def _probers(self, order: dict) -> list[tuple[str, Party]]:
        if self._stranger is None:
            self._stranger = Party.register(self.world.market, "stranger", ["buyer"])
            self._prober_arbiter = self.world.arbiter("probe-arbiter")
        by_id = {p.id: p for p in self.parties}
        out = [(rel, by_id[order[f"{rel}_id"]]) for rel in ("buyer", "seller") if order[f"{rel}_id"] in by_id]
        return out + [("stranger", self._stranger), ("arbiter", self._prober_arbiter), ("admin", self.world.admin)]

    def tracking(self, order: dict) -> str:
        return f"TRK-{self.seed}-{order['id']}"
