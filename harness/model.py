"""An independent, executable model of the escrow rules, written from DESIGN.md.

It imports no marketplace and none of the protocol's formulas: it states what the
rules require, so that when a marketplace and the model disagree, that is a finding,
whichever of them is wrong. It answers three questions:

- **may**: may this party (by its relation to the order) ask for this action in this
  state? A request the model allows must succeed; one it forbids must be refused.
- **deadlines**: a timeout or guardian event in an order's timeline must not come
  before the height the rules give it (the window in blocks from the height the state
  was entered; the lock horizon for the guardian);
- **outcomes**: which terminal states an order's history still allows (never a refund
  after shipment without a ruling; nothing leaves a terminal state).

Every judgement is counted by rule, so a report can say what was exercised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# --- who may ask for what (DESIGN, I4): relations to the order
ROLE_RULES: dict[str, frozenset[str]] = {
    "ship": frozenset({"seller"}),
    "confirm": frozenset({"buyer"}),
    "dispute": frozenset({"buyer", "seller"}),
    "rule": frozenset({"arbiter"}),
    "payout_invoice": frozenset({"buyer", "seller"}),
    "view": frozenset({"buyer", "seller", "admin", "arbiter"}),  # the arbiter only on a disputed order
}

# --- in which states an action can take effect (DESIGN, "Escrow": the order flow)
# ``None`` marks an action the rules leave to the marketplace in that state (not judged).
STATE_RULES: dict[str, dict[str, bool | None]] = {
    # the seller ships a funded order, nothing else (I9: no shipping before funding evidence)
    "ship": {"FUNDED": True},
    # the buyer confirms what was shipped or delivered; in custody "funds leave only by a
    # ruling or the buyer's confirmation"
    "confirm": {"SHIPPED": True, "DELIVERED": True, "HELD_IN_CUSTODY": True},
    # a dispute needs funding evidence (I9) and a trade still open; in custody the case goes on
    "dispute": {"FUNDED": True, "SHIPPED": True, "DELIVERED": True, "HELD_IN_CUSTODY": None},
    # an arbiter rules a dispute, or a case held in custody
    "rule": {"DISPUTED": True, "HELD_IN_CUSTODY": True},
    "view": {},  # any state
}

# --- time: which timeout event ends which state, and the window (a rule setting, in blocks)
TIMEOUTS: dict[str, tuple[str, str]] = {
    "funding_timeout": ("AWAITING_FUNDS", "funding_timeout_blocks"),  # or CREATED, see audit
    "ship_timeout": ("FUNDED", "ship_window_blocks"),
    "delivery_timeout": ("SHIPPED", "delivery_window_blocks"),
    "dispute_window_end": ("DELIVERED", "dispute_window_blocks"),
    "ruling_timeout_release": ("HELD_IN_CUSTODY", "ruling_window_blocks"),
    "ruling_timeout_refund": ("HELD_IN_CUSTODY", "ruling_window_blocks"),
}
GUARDIAN = ("guardian_cancel", "guardian_custody")
TERMINAL = frozenset({"RELEASED", "REFUNDED", "SPLIT", "EXPIRED"})
RULED_REFUNDS = ("rule_refund", "ruling_timeout_refund", "guardian_cancel", "ship_timeout", "funding_timeout",
                 "lock_lost")


@dataclass
class Verdict:
    allowed: bool | None      # None: the rules leave it to the marketplace
    rule: str                 # the model rule that decided
    why: str


@dataclass
class Finding:
    rule: str
    order: int | None
    message: str
    step: int | None = None


@dataclass
class Model:
    rules: dict                                   # what the marketplace reports it runs with
    checks: Counter = field(default_factory=Counter)   # model rule -> judgements made

    # --- requests
    def may(self, relation: str, action: str, state: str, disputed: bool, params: dict | None = None) -> Verdict:
        """May a party of this relation ask for ``action`` on an order in ``state``?"""
        params = params or {}
        roles = ROLE_RULES.get(action, frozenset())
        if relation not in roles or (relation == "arbiter" and not (disputed or state == "HELD_IN_CUSTODY")):
            self.checks["M1 role"] += 1
            return Verdict(False, "M1 role", f"a {relation} may not {action} this order")
        if action == "view":
            self.checks["M1 role"] += 1
            return Verdict(True, "M1 role", f"a {relation} may view it")
        if state in TERMINAL:
            self.checks["M2 state"] += 1
            return Verdict(False, "M2 state", f"{state} is final")
        allowed = STATE_RULES[action].get(state, False)
        if action == "dispute" and disputed and state != "HELD_IN_CUSTODY":
            allowed = False  # one dispute per order
        self.checks["M2 state"] += 1
        if allowed and action == "rule":
            ruling, share = params.get("ruling"), params.get("buyer_share_pct")
            if ruling not in ("release", "refund", "split") or (
                    ruling == "split" and not (share is not None and 0 < share < 100)):
                self.checks["M3 input"] += 1
                return Verdict(False, "M3 input", f"ruling {ruling!r} with share {share!r} is not a valid ruling")
        return Verdict(allowed, "M2 state", f"{action} {'may' if allowed else 'may not'} happen in {state}")

    def judge(self, verdict: Verdict, status: int, moved_meanwhile: bool) -> str | None:
        """A request's answer against the model's verdict; the finding's text, or None."""
        if verdict.allowed is None or status == 429 or status >= 500:
            return None  # no verdict, or the marketplace declined to answer (rate limit, node down)
        ok = status < 300
        if ok and not verdict.allowed:
            return f"the marketplace accepted it ({status}); the rules forbid it: {verdict.why}"
        if not ok and verdict.allowed and not moved_meanwhile:
            return f"the marketplace refused it ({status}); the rules allow it: {verdict.why}"
        return None

    def burst(self, answers: list[int]) -> str | None:
        """Concurrent copies of one request: at most one may take effect (I6)."""
        self.checks["M4 burst"] += 1
        wins = sum(1 for s in answers if s < 300)
        return f"{wins} of {len(answers)} concurrent copies succeeded" if wins > 1 else None

    # --- timelines
    def audit(self, order_id: int, order: dict, timeline: list[dict]) -> list[Finding]:
        """The timeline against the rules' deadlines and outcomes."""
        out: list[Finding] = []
        entered: dict[str, int | None] = {}
        shipped = False
        for i, e in enumerate(timeline):
            event, height = e["event"], e.get("height")
            if event in TIMEOUTS:
                state, window = TIMEOUTS[event]
                self.checks["M5 deadline"] += 1
                if event == "funding_timeout" and e["from_state"] == "CREATED":
                    state = "CREATED"
                start = entered.get(state)
                if e["from_state"] != state:
                    out.append(Finding("M5 deadline", order_id, f"'{event}' ended {e['from_state']}, "
                                                                f"which that timeout does not end"))
                elif start is not None and height is not None and height < start + int(self.rules[window]):
                    out.append(Finding("M5 deadline", order_id,
                                       f"'{event}' at height {height}: {state} was entered at {start} and its "
                                       f"{self.rules[window]}-block window ends at {start + int(self.rules[window])}"))
            if event in GUARDIAN and order.get("hold") and order["hold"].get("htlc_expiry_height"):
                self.checks["M6 guardian"] += 1
                horizon = (int(order["hold"]["htlc_expiry_height"]) - int(self.rules["hold_expiry_delta_blocks"])
                           - int(self.rules["guardian_margin_blocks"]))
                if height is not None and height < horizon:
                    out.append(Finding("M6 guardian", order_id, f"'{event}' at height {height}, before the lock "
                                                                f"horizon {horizon}"))
            if event == "ship":
                shipped = True
            if e["to_state"] == "REFUND_PENDING" and shipped:
                self.checks["M7 outcome"] += 1
                if event not in ("rule_refund", "ruling_timeout_refund"):
                    out.append(Finding("M7 outcome", order_id, f"refunded after shipment by '{event}', "
                                                               "without a ruling"))
            if e["from_state"] in TERMINAL and e["to_state"] != e["from_state"]:
                self.checks["M7 outcome"] += 1
                out.append(Finding("M7 outcome", order_id, f"left the terminal state {e['from_state']} by '{event}'"))
            if e["to_state"] != e["from_state"]:
                entered[e["to_state"]] = height
        return out

    def counts(self) -> dict[str, int]:
        return dict(sorted(self.checks.items()))


def relation(party_id: int, order: dict, roles: list[str]) -> str:
    """A party's relation to an order, as the model names it: its buyer or seller, else
    what its roles make it (an arbiter, an admin), else a stranger."""
    if party_id == order["buyer_id"]:
        return "buyer"
    if party_id == order["seller_id"]:
        return "seller"
    if "arbiter" in roles:
        return "arbiter"
    if "admin" in roles:
        return "admin"
    return "stranger"
