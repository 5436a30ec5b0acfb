"""One generated (or replayed) escrow history, run on a live cluster through the driver.

A history opens orders in every escrow mode and then takes steps: a party of any
relation (buyer, seller, arbiter, admin, a stranger) asks for any action in any state,
alone or in a concurrent burst; the courier posts real or forged evidence; blocks are
mined, above all at and around the deadlines; faults strike (the app restarts or is
killed, a node restarts, the buyer and the hub are partitioned). After each request the
answer is judged by the model (``harness.model``); at the end the history is drained to
terminal states, every timeline is audited against the model's deadlines and outcomes,
and the oracle checks every invariant on node truth.

Steps are plain dicts, so a history is a trace: generated online from a seed (choices
depend on the states the marketplace reports), recorded as it runs, and replayed step
by step (``escrowlab replay``).
"""

from __future__ import annotations

import random
import threading
import time

from escrow_protocol.modes import MODE_NAMES
from harness import oracle
from harness.driver import ApiError, Unsupported
from harness.funding import FUNDING
from harness.model import TERMINAL, TIMEOUTS, Finding, Model, relation
from harness.presets import ADDRESSES
from harness.scenario import Scenario

ACTIONS = ("ship", "confirm", "dispute", "rule", "view")
RELATIONS = ("buyer", "seller", "arbiter", "admin", "stranger")
WINDOW_OF = {state: window for _event, (state, window) in TIMEOUTS.items()}
MODE_WEIGHTS = {"ln_hold": 6, "onchain_multisig": 2, "custodial": 2}
PAIRS = (("buyer1", "seller1"), ("buyer2", "seller2"), ("buyer2", "seller1"), ("buyer1", "seller2"))
FAULTS = ("restart_app", "kill_app", "restart_seller_node", "partition_buyer")


class History(Scenario):
    """A history as a scenario: the base class owns the marketplace, the parties' cleanup
    and the oracle; ``run`` takes the steps."""

    name = "explore"
    summary = "A generated escrow history, judged step by step by the model and at the end by the oracle."
    modes = MODE_NAMES
    fresh_cluster = False

    def __init__(self, world, seed: int, planted_bug: str | None = None, steps: list[dict] | None = None,
                 length: int = 24, modes: tuple[str, ...] = MODE_NAMES, faults: bool = True) -> None:
        super().__init__(world, seed, "ln_hold", planted_bug)
        self.replay = steps
        self.length = length
        self.allowed_modes = tuple(m for m in modes if m in MODE_WEIGHTS)
        self.faults = faults
        self.rng = random.Random(f"explore:{seed}")
        self.trace: list[dict] = []
        self.findings: list[Finding] = []
        self.coverage: dict[tuple[str, str, str], int] = {}
        self.labels: dict[str, dict] = {}          # order label -> order view at opening
        self.modes_of: dict[str, str] = {}
        self.model: Model | None = None

    # --- the cast
    def setup(self):
        self.model = self._model = Model(self.cx.settings)  # one model: steps, adversaries, audit
        self.buyers = {n: self.buyer(n, bind=True) for n in ("buyer1", "buyer2")}
        self.sellers = {n: self.seller(n) for n in ("seller1", "seller2")}
        self.judge = self.world.arbiter("explore-arbiter")
        self.stranger = self.track(self.world.buyer("buyer1"))
        self.courier = self.world.courier()

    # --- the history
    def run(self):
        steps = self.replay if self.replay is not None else self._generate()
        for i, step in enumerate(steps):
            self.trace.append(step)
            try:
                self._take(i, step)
                self._adversaries()
            except (ApiError, AssertionError, TimeoutError) as exc:  # the step could not be taken: note it
                self.log.info("step %s (%s) could not be taken: %s", i, step["op"], exc)
            except Unsupported as exc:
                self.log.info("step %s skipped: %s", i, exc)
        self._drain()

    def _adversaries(self) -> None:
        """The catalogue's adversaries (``Scenario.probe``) at every state an order of the history
        reaches: each relation tries, once per state, what the model forbids there. The random
        steps try a forbidden request in a state now and then; this tries all of them wherever
        the history goes (a seller confirming a shipped order, a ship while the invoice is open)."""
        for k in self.labels:
            self.probe(self._view(k))

    def _generate(self):
        """Steps chosen online: each choice sees the states the marketplace reports."""
        for _ in range(2 + self.rng.randrange(2)):
            yield self._open_step()
        for _ in range(self.length):
            r = self.rng.random()
            live = [k for k in self.labels if self._state(k) not in TERMINAL]
            if r < 0.10 and len(self.labels) < 6 or not live:
                yield self._open_step()
            elif r < 0.22:
                yield self._mine_step(live)
            elif r < 0.30:  # an action in the very block its state's deadline falls due
                k = self.rng.choice(live)
                yield {"op": "race_deadline", "order": k, "act": self._act_step(k)}
            elif r < 0.36 and self.faults:
                yield {"op": "fault", "kind": self.rng.choice(FAULTS)}
            elif r < 0.46:
                k = self.rng.choice(live)
                yield {"op": "courier", "order": k, "forged": self.rng.random() < 0.3}
            else:
                yield self._act_step(self.rng.choice(live))

    def _open_step(self) -> dict:
        mode = self.rng.choices(self.allowed_modes, [MODE_WEIGHTS[m] for m in self.allowed_modes])[0]
        buyer, seller = self.rng.choice(PAIRS)
        fund = mode == "custodial" or self.rng.random() < 0.85
        return {"op": "open", "order": f"o{len(self.labels) + 1}", "mode": mode, "buyer": buyer, "seller": seller,
                "price": self.rng.randrange(*FUNDING[mode].prices, 1000), "fund": fund}

    def _mine_step(self, live: list[str]) -> dict:
        if self.rng.random() < 0.7:
            return {"op": "mine_to", "order": self.rng.choice(live), "offset": self.rng.choice((-1, 0, 0, 1))}
        return {"op": "mine", "blocks": self.rng.choice((1, 1, 2, 3))}

    def _act_step(self, k: str) -> dict:
        state = self._state(k)
        burst = self.rng.choice((2, 3, 5)) if self.rng.random() < 0.15 else 1
        if self.rng.random() < 0.5:  # progress: what the rules allow next, by who may do it
            if state == "SHIPPED" and self.rng.random() < 0.4:  # the courier delivers: DELIVERED, its window
                return {"op": "courier", "order": k, "forged": False}
            options = {"FUNDED": [("seller", "ship"), ("buyer", "dispute")],
                       "SHIPPED": [("buyer", "confirm"), ("seller", "dispute"), ("buyer", "dispute")],
                       "DELIVERED": [("buyer", "confirm"), ("buyer", "dispute")],
                       "DISPUTED": [("arbiter", "rule")], "HELD_IN_CUSTODY": [("arbiter", "rule")]}.get(state)
            if options:
                who, action = self.rng.choice(options)
                return {"op": "act", "order": k, "as": who, "action": action, "params": self._params(action),
                        "burst": burst}
        action = self.rng.choice(ACTIONS)
        return {"op": "act", "order": k, "as": self.rng.choice(RELATIONS), "action": action,
                "params": self._params(action, sloppy=True), "burst": burst}

    def _params(self, action: str, sloppy: bool = False) -> dict:
        if action == "rule":
            ruling = self.rng.choice(("release", "refund", "split"))
            share = self.rng.choice((40, 25, 0, 100)) if sloppy else self.rng.choice((40, 25))
            return {"ruling": ruling, **({"buyer_share_pct": share} if ruling == "split" else {})}
        if action == "dispute":
            return {"reason": "explored"}
        return {}

    # --- taking a step
    def _take(self, i: int, step: dict) -> None:
        op = step["op"]
        if op == "open":
            self._open(step)
        elif op == "act":
            self._act(i, step)
        elif op == "courier":
            self._courier(i, step)
        elif op == "mine":
            self.world.mine(int(step["blocks"]))
        elif op == "mine_to":
            self._mine_to(step)
        elif op == "race_deadline":
            if self._mine_to(dict(step, offset=0), settle=False):
                self._take(i, step["act"])  # the nested step may be a courier report too
        elif op == "fault":
            self._fault(step["kind"])

    def _open(self, step: dict) -> None:
        k, mode = step["order"], step["mode"]
        buyer, seller = self.buyers[step["buyer"]], self.sellers[step["seller"]]
        if step["fund"]:
            order = FUNDING[mode].place(self, buyer, seller, int(step["price"]))
        elif mode == "ln_hold":
            order = self.order_unpaid(buyer, seller, int(step["price"]))
        else:
            listing = seller.list_item(f"item-{k}", int(step["price"]), mode=mode)
            if mode == "onchain_multisig":
                FUNDING[mode].wallet(self, buyer)
                FUNDING[mode].wallet(self, seller)
            order = buyer.buy(listing["id"])
            self.orders.append(order["id"])
        self.labels[k] = order
        self.modes_of[k] = mode
        self.log.info("%s: order %s (%s, %s sats) opened%s, now %s", k, order["id"], mode, step["price"],
                      " and funded" if step["fund"] else "", order["state"])

    def _view(self, k: str) -> dict:
        return self.world.market.order(self.world.admin, self.labels[k]["id"])

    def _state(self, k: str) -> str:
        return self._view(k)["state"]

    def _party(self, k: str, who: str):
        order = self.labels[k]
        if who == "buyer":
            return next(p for p in self.buyers.values() if p.id == order["buyer_id"])
        if who == "seller":
            return next(p for p in self.sellers.values() if p.id == order["seller_id"])
        return {"arbiter": self.judge, "admin": self.world.admin, "stranger": self.stranger}[who]

    def _act(self, i: int, step: dict) -> None:
        k, who, action = step["order"], step["as"], step["action"]
        if k not in self.labels:
            return  # a shrunk trace dropped the order's opening
        party = self._party(k, who)
        before = self._view(k)
        params = dict(step.get("params") or {})
        if action == "ship":
            params = {"courier": "fastship", "tracking": f"TRK-{self.seed}-{k}-{i}"}
        rel = relation(party.id, before, [who])
        disputed = bool(before.get("disputed"))
        verdict = self.model.may(rel, action, before["state"], disputed, params)
        key = (before["state"], action, rel)
        self.coverage[key] = self.coverage.get(key, 0) + 1
        answers = self._burst(party, action, before["id"], params, int(step.get("burst", 1)))
        after = self._view(k)
        moved = after["state"] != before["state"]
        statuses = [a.status for a in answers]
        codes = sorted({a.code for a in answers if a.code})
        self.log.info("%s %s: %s as %s in %s -> %s %s (model: %s)", k, before["id"], action, rel, before["state"],
                      statuses, " ".join(codes), "allowed" if verdict.allowed else
                      "forbidden" if verdict.allowed is False else "free")
        # A burst is judged as one request: the best answer of its copies
        best = min(statuses)
        problem = self.model.judge(verdict, best, moved and best >= 300)
        if problem:
            self._find(verdict.rule, k, i, f"{action} by the {rel} in {before['state']}: {problem}"
                                           + (f" ({', '.join(codes)})" if codes and best >= 300 else ""))
        if len(answers) > 1 and action != "view":
            self.cx.race_results.append(statuses)  # the oracle's I6 judges every burst too
            problem = self.model.burst(statuses)
            if problem:
                self._find("M4 burst", k, i, f"{action} by the {rel} in {before['state']}: {problem}")

    def _burst(self, party, action: str, order_id: int, params: dict, n: int):
        if n == 1:
            return [party.act(action, order_id, **params)]
        answers: list = [None] * n
        start = threading.Barrier(n)

        def go(j: int) -> None:
            start.wait()
            answers[j] = party.act(action, order_id, **params)

        threads = [threading.Thread(target=go, args=(j,)) for j in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return [a for a in answers if a is not None]

    def _courier(self, i: int, step: dict) -> None:
        k = step["order"]
        if k not in self.labels:
            return
        view = self._view(k)
        tracking = view.get("tracking_number")
        if not tracking:
            return  # nothing shipped: a courier has nothing to report
        buyer = self._party(k, "buyer")
        forged = bool(step.get("forged"))
        answer = self.courier.event(tracking, "delivered", ADDRESSES[buyer.node.name],
                                    secret="not-the-courier-secret" if forged else None)
        self.model.checks["M8 evidence"] += 1
        self.log.info("%s: courier reports delivery%s -> %s", k, " (forged)" if forged else "", answer.status)
        if forged and answer.ok:
            self._find("M8 evidence", k, i, "a forged courier webhook was accepted")
            self.cx.forged_evidence.add(view["id"])

    def _mine_to(self, step: dict, settle: bool = True) -> bool:
        """Mine to the order's current deadline (plus the step's offset); False if it has none."""
        k = step["order"]
        if k not in self.labels:
            return False
        view = self._view(k)
        window = WINDOW_OF.get(view["state"])
        if window is None:
            self.world.mine(1)
            return False
        entered = max((e.get("height") or 0 for e in self.world.market.timeline(self.world.admin, view["id"])
                       if e["to_state"] == view["state"]), default=None)
        tip = self.world.cluster.bitcoind.rpc.getblockcount()
        if not entered:
            self.world.mine(1)
            return False
        target = entered + int(self.cx.settings[window]) + int(step.get("offset", 0))
        blocks = max(1, min(target - tip, 40))
        self.log.info("%s: mining %s blocks toward its %s deadline %+d (height %s)%s", k, blocks, view["state"],
                      int(step.get("offset", 0)), target, "" if settle else ", and acting at once")
        self.world.mine(blocks)
        if settle:
            time.sleep(0.3)  # the worker's next pass sees the new tip
        return True

    def _fault(self, kind: str) -> None:
        faults, market = self.world.cluster.faults, self.world.market
        self.log.info("fault: %s", kind)
        if kind == "restart_app":
            market.restart()
        elif kind == "kill_app":
            market.kill()
            market.restart()
        elif kind == "restart_seller_node":
            faults.restart("seller2")
        elif kind == "partition_buyer":
            faults.partition("buyer1", "hub")
            self.world.mine(1)
            faults.heal("buyer1", "hub")

    # --- the end
    def _drain(self, rounds: int = 6) -> None:
        """Bring every order to a terminal state: rule open cases, sign asked-for spends, let time pass."""
        horizon = max(int(self.cx.settings[w]) for w in ("funding_timeout_blocks", "ship_window_blocks",
                                                          "delivery_window_blocks", "dispute_window_blocks"))
        for _ in range(rounds):
            open_now = {k: self._view(k) for k in self.labels}
            open_now = {k: v for k, v in open_now.items() if v["state"] not in TERMINAL}
            if not open_now:
                return
            for k, view in open_now.items():
                try:
                    if view["state"] in ("DISPUTED", "HELD_IN_CUSTODY"):
                        self.judge.act("rule", view["id"], ruling="release")
                    if self.modes_of[k] == "onchain_multisig" and view["state"].endswith("_PENDING"):
                        FUNDING["onchain_multisig"].outcome(self, self._party(k, "buyer"), view,
                                                            ("RELEASED", "REFUNDED", "SPLIT"), 20)
                except (ApiError, AssertionError, TimeoutError) as exc:
                    self.log.info("draining %s: %s", k, exc)
            self.world.mine(horizon + 1)
            time.sleep(1.0)
        for k in self.labels:
            self.settle_on(self.world.admin, self.labels[k], *TERMINAL, timeout=20)

    def _find(self, rule: str, k: str, step: int | None, message: str) -> None:
        self.findings.append(Finding(rule, self.labels[k]["id"] if k in self.labels else None, message, step))
        self.log.info("FINDING %s at step %s: %s", rule, step, message)

    def _check(self, started: float):
        violations, checked, orders, balances = super()._check(started)  # the model's audit included
        label = {v["id"]: k for k, v in self.labels.items()}
        violations += [oracle.Violation(f.rule, f.order, f"{label.get(f.order, '')} {f.message}".strip(),
                                        {"step": f.step}) for f in self.findings]
        return violations, checked, orders, balances


def trace_scenario(name: str, trace: dict) -> type[History]:
    """A trace as a catalogue scenario: its steps replayed, judged like any history."""
    steps = trace["steps"]
    modes = tuple(sorted({s["mode"] for s in steps if s["op"] == "open"}, key=MODE_NAMES.index)) or ("ln_hold",)
    found = "; ".join(sorted({f["rule"] for f in trace.get("findings", [])}))

    class Replayed(History):
        def __init__(self, world, seed: int, mode: str | None = None, planted_bug: str | None = None) -> None:
            super().__init__(world, int(trace["seed"]), planted_bug, steps=steps)

    Replayed.name = name
    Replayed.modes = modes
    Replayed.summary = (f"A replayed explored history ({len(steps)} steps)"
                        + (f" that once found {found}" if found else "") + ".")
    Replayed.__qualname__ = Replayed.__name__ = f"Trace_{name}"
    return Replayed
