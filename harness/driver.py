"""The `Marketplace` driver: the only way the harness acts on a marketplace and reads
what it says.

Scenarios, the oracle, the load tests and the simulator's live mode speak to a
marketplace through one of these. ``harness.http.ReferenceMarketplace`` drives the
reference app over HTTP; a team with its own marketplace writes one class (see
``docs/bring-your-own-marketplace.md``) and passes it with
``escrowlab scenario run --marketplace module:Class``.

What a driver returns is in the escrow protocol's words (``escrow_protocol``):
an **order view** is a dict with at least

- ``id``, ``state`` (a ``State``), ``escrow_mode`` (a ``Mode``), ``price_sats``,
  ``fee_sats`` (the commission of the outcome), ``buyer_id``, ``seller_id``,
  ``buyer_share_ppm`` (a split's buyer part, or None), ``disputed`` (ever disputed),
  ``tracking_number`` (once shipped, else None);
- ``hold``: for ``ln_hold``, ``{"payment_hash", "payment_request", "htlc_expiry_height",
  "lnd_state"}`` (``htlc_expiry_height`` filled once the order is FUNDED: the guardian's
  horizon is computed from it), else None;
- ``payouts``: ``[{"beneficiary": "buyer"|"seller", "amount_sats", "payment_hash",
  "status"}]``, every payout the marketplace planned;

and an order's **timeline** is a list of ``{"event", "from_state", "to_state", "actor",
"height", "at"}`` (ISO time; actor ``user:<id>``, ``worker``, ``guardian``, ``courier:<name>``).

Parties are the harness's objects (``harness.actors.Party``); a driver keeps whatever
it needs to act as one (a token, a session) on the party's ``auth`` attribute. The
scenarios' couriers are named ``fastship`` and ``slowpost``; a driver knows their secrets.
Requests that may be refused go through ``attempt``, which never raises for a
refusal; the typed verbs raise ``ApiError`` when the marketplace refuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regtest_cluster.waiting import WaitTimeout, wait_for

if TYPE_CHECKING:  # the parties are the harness's; a driver only acts as them
    from harness.actors import Party
    from regtest_cluster.cluster import Cluster
    from regtest_cluster.nodes.lnd import LndNode


class Unsupported(NotImplementedError):
    """The marketplace (or its driver) has no such feature, e.g. a mode it does not serve."""


@dataclass
class Answer:
    """What a marketplace said to one request: an HTTP-like status, a refusal code, the body."""

    status: int
    code: str = ""
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)   # where the marketplace answers over HTTP

    @property
    def ok(self) -> bool:
        return self.status < 300

    def json(self) -> Any:  # the shape an httpx response has, for code that reads either
        return self.body

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def text(self) -> str:
        return self.body if isinstance(self.body, str) else json.dumps(self.body)


class ApiError(AssertionError):
    """The marketplace refused a request the harness expected to succeed."""

    def __init__(self, answer: Answer, what: str = "") -> None:
        self.status = answer.status
        self.problem = answer.body if isinstance(answer.body, dict) else {"detail": str(answer.body)}
        self.code = answer.code
        super().__init__(f"{what + ': ' if what else ''}HTTP {self.status} {self.code}: "
                         f"{self.problem.get('detail', '')}")


def counts_between(before: dict, after: dict) -> dict:
    """The work done between two ``Marketplace.work_counters`` readings, key by key (nested
    dicts likewise; a key new in ``after`` counts from 0)."""
    out: dict = {}
    for key, value in after.items():
        if isinstance(value, dict):
            out[key] = counts_between(before.get(key) or {}, value)
        elif isinstance(value, (int, float)):
            out[key] = value - (before.get(key) or 0)
    return out


def read_work_counters(market: "Marketplace") -> dict:
    """``market.work_counters()``, or ``{}`` when it cannot answer: a report figure, never a
    reason to fail a benchmark or a load run."""
    try:
        return market.work_counters()
    except Exception:  # noqa: BLE001 (any marketplace's failure to report)
        return {}


@dataclass
class Streamed:
    """What a party's notification stream delivered, for I18: every notification with an id above
    ``after`` that the party's inbox (``notifications``) shows must be among ``delivered``
    (id -> (kind, order id)). Notification ids are the inbox's ``id``; a stream resumes after the
    last id it sent (SSE's ``Last-Event-ID``). A stream closed before the judgement (a load run's
    users stop, then time ends their orders) owes only up to ``upto``: the newest notification
    its party's inbox showed as it closed.

    The same record judges a party's webhook (``harness.webhooks``): ``delivered`` what arrived
    signed, ``refused`` (id -> why) what arrived and had to be refused (a signature that does not
    verify, a body that is not the notification named)."""

    after: int
    delivered: dict[int, tuple[str, int | None]]
    upto: int | None = None
    refused: dict[int, str] = field(default_factory=dict)

    def owed(self, inbox: list[dict]) -> list[dict]:
        """The inbox's notifications the stream had to send: those newer than its start (and,
        for a closed stream, no newer than ``upto``)."""
        return [n for n in inbox
                if self.after < (n.get("id") or 0) <= (self.upto if self.upto is not None else float("inf"))]


class Marketplace:
    """A marketplace as the harness sees it. Subclass and implement what your marketplace has.

    The lifecycle methods start a *fresh* marketplace (empty store) for each scenario,
    with the rule settings it asks for; ``restart`` keeps the store (crash recovery).
    Methods of a mode the marketplace does not serve raise ``Unsupported``.
    """

    name = "marketplace"
    # The marketplace's own deliberate defects, each with the scenario that must expose it:
    # ``start`` gets ``planted_bug=<name>`` in its settings; ``scenario run --all`` proves the
    # oracle against each.
    planted_bugs: dict[str, str] = {}

    def __init__(self, cluster: "Cluster", run_dir: Path) -> None:
        self.cluster = cluster
        self.run_dir = run_dir
        self.admin: "Party | None" = None   # an admin party, logged in by ``start``; reads every order

    # --- lifecycle
    def start(self, settings: dict) -> None:
        """Start a fresh marketplace with these rule settings (escrow protocol names)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self, **settings) -> None:
        """Start again on the same store (after a crash or a stop)."""
        raise Unsupported(f"{self.name} cannot be restarted by the harness")

    def kill(self) -> None:
        """SIGKILL the marketplace (a crash fault)."""
        raise Unsupported(f"{self.name} cannot be killed by the harness")

    def wait_exit(self, timeout: float = 60) -> None:
        """Wait for the marketplace to die at a crash point (setting ``fault_points``)."""
        raise Unsupported(f"{self.name} has no crash points")

    def close(self) -> None:
        """Release what the driver holds (clients, files) once a scenario is over."""

    def running(self) -> bool:
        return True

    def work_counters(self) -> dict:
        """The marketplace's own counts of work done since it started, for benchmarks and load
        reports (``db_queries``, ``lnd_calls``, ``lnd_calls_by_method`` ...): numbers, or dicts
        of numbers. ``{}`` when it keeps none; ``counts_between`` takes two readings apart."""
        return {}

    def rules(self) -> dict:
        """The rule settings the marketplace runs with: ``modes`` (served), ``fee_ppm``,
        ``payout_fee_limit_sats``, the ``*_blocks`` windows, ``speedup_factor``,
        ``guardian_margin_blocks``, ``hold_expiry_delta_blocks``, ..."""
        raise NotImplementedError

    # --- parties
    def register(self, party: "Party", address: str = "") -> None:
        """Register the party (its ``name`` and ``roles``); set ``party.id`` and ``party.auth``."""
        raise NotImplementedError

    def make_arbiter(self, party: "Party") -> None:
        raise NotImplementedError

    def bind_payout_node(self, party: "Party", node: "LndNode") -> None:
        """Let the marketplace ask this party's node for payout invoices."""
        raise Unsupported(f"{self.name} does not fetch payout invoices from a party's node")

    def courier_secret(self, courier: str) -> str:
        raise NotImplementedError

    # --- trade
    def list_item(self, seller: "Party", title: str, price_sats: int, stock: int = 10,
                  mode: str = "ln_hold", category: str = "electronics") -> dict:
        raise NotImplementedError

    def place_order(self, buyer: "Party", listing_id: int, quantity: int = 1, **funding) -> dict:
        """Order a listing; the order view carries the payment request or address to fund."""
        raise NotImplementedError

    def attempt(self, party: "Party | None", action: str, order_id: int, **params) -> Answer:
        """Ask for an action of the escrow protocol's ``Action`` on an order, as this party
        (None: unauthenticated); a refusal is an Answer, not an exception.
        Params: ship ``courier``, ``tracking``; dispute ``reason``; rule ``ruling``,
        ``buyer_share_pct``; payout_invoice ``payment_request``."""
        raise NotImplementedError

    def courier_event(self, courier: str, tracking: str, status: str, address: str, *,
                      event_id: str | None = None, timestamp: int | None = None,
                      secret: str | None = None) -> Answer:
        """A courier's signed webhook (the protocol's format); ``secret`` overrides the real one."""
        raise NotImplementedError

    def dispute_message(self, party: "Party", order_id: int, body: str) -> None:
        raise Unsupported(f"{self.name} has no dispute messages")

    # --- reading
    def order(self, party: "Party", order_id: int) -> dict:
        raise NotImplementedError

    def wait_order(self, party: "Party", order_id: int, states: tuple[str, ...], timeout: float = 30,
                   view: bool = True) -> dict:
        """The order as ``party`` sees it once it is in one of ``states``; raises ``WaitTimeout``
        naming the state it was in. Here the harness asks again and again (``order``, with
        growing pauses); a marketplace that pushes its changes to the parties overrides this to
        wait for them. ``view=False``: only ``{"id", "state"}`` is needed, which such an
        override may answer from what was pushed."""
        last: dict = {}

        def reached() -> dict | None:
            nonlocal last
            last = self.order(party, order_id)
            return last if last["state"] in states else None

        try:
            return wait_for(reached, timeout=timeout, what=f"order {order_id} in {'/'.join(states)}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; order was {last.get('state')}, payouts {last.get('payouts')}") from None

    def timeline(self, party: "Party", order_id: int) -> list[dict]:
        raise NotImplementedError

    def notifications(self, party: "Party") -> list[dict]:
        """Every notification of the party: ``{"kind": "order.<state lower>", "order_id", ...}``."""
        raise NotImplementedError

    # --- the notification stream (optional: a marketplace that pushes nothing raises Unsupported)
    def watch(self, party: "Party") -> None:
        """Open the party's notification stream now and keep it open, reconnecting after a drop,
        until ``close``. What it delivers is judged by I18 (``streamed``)."""
        raise Unsupported(f"{self.name}'s driver reads no notification stream")

    def streamed(self, party: "Party", upto: int, grace: float = 5.0) -> "Streamed | None":
        """What the party's stream delivered since ``watch``, once it has delivered notification
        ``upto`` (the inbox's newest; waiting up to ``grace`` seconds); None if never watched."""
        return None

    def stream_away(self, party: "Party"):
        """A context manager: the party's stream is cut at once and stays away inside, then
        resumes from the last notification it read (as a client that lost its network)."""
        raise Unsupported(f"{self.name}'s driver reads no notification stream")

    # --- outgoing webhooks (optional): POSTs signed as the protocol says (escrow_protocol.webhook)
    def subscribe_webhook(self, party: "Party", url: str) -> str:
        """Register ``url`` as a webhook endpoint of the party: every notification of theirs from
        now on is POSTed there, signed. Returns the signing secret. The harness receives them
        (``harness.webhooks``) and I18 judges what arrived against the party's inbox."""
        raise Unsupported(f"{self.name} sends no webhooks")

    def orders(self, party: "Party", offset: int = 0, limit: int = 200) -> dict:
        """A page of the orders the party may see: ``{"items": [...], "total": n}``."""
        raise NotImplementedError

    def disputes(self, party: "Party") -> list[dict]:
        """Open disputes an arbiter can rule: ``[{"order_id", ...}]``."""
        raise NotImplementedError

    # --- on-chain multisig
    def set_onchain_keys(self, party: "Party", key: str, timeout_key: str | None = None) -> dict:
        raise Unsupported(f"{self.name} does not serve onchain_multisig")

    def escrow(self, party: "Party", order_id: int) -> dict:
        """The on-chain escrow: descriptor, address, keys, amount, spend."""
        raise Unsupported(f"{self.name} does not serve onchain_multisig")

    def pending_psbt(self, party: "Party", order_id: int) -> dict | None:
        raise Unsupported(f"{self.name} does not serve onchain_multisig")

    def submit_psbt(self, party: "Party", order_id: int, psbt: str) -> dict:
        raise Unsupported(f"{self.name} does not serve onchain_multisig")

    # --- custodial
    def wallet(self, party: "Party") -> dict:
        raise Unsupported(f"{self.name} does not serve custodial")

    def withdrawals(self, party: "Party") -> list[dict]:
        raise Unsupported(f"{self.name} does not serve custodial")

    def ln_deposit(self, party: "Party", amount_sats: int) -> dict:
        raise Unsupported(f"{self.name} does not serve custodial")

    def withdraw_ln(self, party: "Party", payment_request: str, key: str | None = None) -> Answer:
        raise Unsupported(f"{self.name} does not serve custodial")

    def withdraw_onchain(self, party: "Party", address: str, amount_sats: int, key: str | None = None) -> Answer:
        raise Unsupported(f"{self.name} does not serve custodial")

    def ledger(self, admin: "Party") -> dict | None:
        """The custodial ledger's claims, or None when the marketplace keeps none."""
        return None

    def reconcile(self, admin: "Party") -> dict:
        raise Unsupported(f"{self.name} has no custodial reconciliation")
