"""The order lifecycle as data: one table of ``(state, event) -> state``.

The states and events are the escrow protocol's (``escrow_protocol.states``); this
table, which moves between them, is this app's rule. The service applies it with
compare-and-swap and the API turns its refusals into 409s.

Every irreversible node action (settle, cancel, pay) happens in a ``*_PENDING``
state, after the claim of that state has committed. Terminal states absorb.
Every non-terminal state has a wall-clock and a block-height deadline whose
event moves it on, so time alone always reaches a terminal state (I15).
"""

from __future__ import annotations

from escrow_protocol.states import FUNDED_STATES, PENDING, TERMINAL, Event, State


# The canonical vocabulary is the protocol's; the app names them S and E for short.
S = State
E = Event

TRANSITIONS: dict[tuple[S, E], S] = {
    (S.CREATED, E.INVOICE_ISSUED): S.AWAITING_FUNDS,
    (S.CREATED, E.ESCROW_OPENED): S.AWAITING_FUNDS,
    (S.CREATED, E.FUNDING_TIMEOUT): S.EXPIRED,
    (S.FUNDED, E.FUNDING_REORGED): S.AWAITING_FUNDS,
    (S.AWAITING_FUNDS, E.FUNDED): S.FUNDED,
    (S.AWAITING_FUNDS, E.FUNDING_TIMEOUT): S.EXPIRED,
    (S.FUNDED, E.SHIP): S.SHIPPED,
    (S.FUNDED, E.SHIP_TIMEOUT): S.REFUND_PENDING,
    (S.FUNDED, E.GUARDIAN_CANCEL): S.REFUND_PENDING,
    (S.FUNDED, E.OPEN_DISPUTE): S.DISPUTED,
    (S.SHIPPED, E.DELIVERED): S.DELIVERED,
    (S.SHIPPED, E.BUYER_CONFIRM): S.RELEASE_PENDING,
    (S.SHIPPED, E.OPEN_DISPUTE): S.DISPUTED,
    (S.SHIPPED, E.DELIVERY_TIMEOUT): S.DISPUTED,       # never a silent refund after shipment
    (S.SHIPPED, E.GUARDIAN_CUSTODY): S.HELD_IN_CUSTODY,
    (S.DELIVERED, E.BUYER_CONFIRM): S.RELEASE_PENDING,
    (S.DELIVERED, E.DISPUTE_WINDOW_END): S.RELEASE_PENDING,
    (S.DELIVERED, E.OPEN_DISPUTE): S.DISPUTED,
    (S.DELIVERED, E.GUARDIAN_CUSTODY): S.HELD_IN_CUSTODY,
    (S.DISPUTED, E.RULE_RELEASE): S.RELEASE_PENDING,
    (S.DISPUTED, E.RULE_REFUND): S.REFUND_PENDING,
    (S.DISPUTED, E.RULE_SPLIT): S.SPLIT_PENDING,
    (S.DISPUTED, E.GUARDIAN_CUSTODY): S.HELD_IN_CUSTODY,  # a dispute has no timeout of its own (I12)
    # Custody: the hold is settled, the case goes on; funds leave only by a ruling
    # or the buyer's confirmation, and the ruling deadline gives a default ruling.
    (S.HELD_IN_CUSTODY, E.DELIVERED): S.HELD_IN_CUSTODY,
    (S.HELD_IN_CUSTODY, E.OPEN_DISPUTE): S.HELD_IN_CUSTODY,
    (S.HELD_IN_CUSTODY, E.BUYER_CONFIRM): S.RELEASE_PENDING,
    (S.HELD_IN_CUSTODY, E.RULE_RELEASE): S.RELEASE_PENDING,
    (S.HELD_IN_CUSTODY, E.RULE_REFUND): S.REFUND_PENDING,
    (S.HELD_IN_CUSTODY, E.RULE_SPLIT): S.SPLIT_PENDING,
    (S.HELD_IN_CUSTODY, E.RULING_TIMEOUT_RELEASE): S.RELEASE_PENDING,
    (S.HELD_IN_CUSTODY, E.RULING_TIMEOUT_REFUND): S.REFUND_PENDING,
    (S.RELEASE_PENDING, E.RELEASED): S.RELEASED,
    (S.REFUND_PENDING, E.REFUNDED): S.REFUNDED,
    (S.SPLIT_PENDING, E.SPLIT_DONE): S.SPLIT,
    # The node cancelled the hold (expiry we failed to prevent, or a node operator):
    # the buyer has the funds back; record it and tell both parties (I11, I18).
    # From a pending release or split too: settling failed because the hold was gone.
    **{(s, E.LOCK_LOST): S.REFUNDED
       for s in (S.FUNDED, S.SHIPPED, S.DELIVERED, S.DISPUTED, S.RELEASE_PENDING, S.SPLIT_PENDING)},
}

# Which events a user may cause, by their relation to the order (I4). Everything
# else is caused by the worker, the guardian, or a courier webhook.
ACTOR_EVENTS: dict[E, frozenset[str]] = {
    E.SHIP: frozenset({"seller"}),
    E.BUYER_CONFIRM: frozenset({"buyer"}),
    E.OPEN_DISPUTE: frozenset({"buyer", "seller"}),
    E.RULE_RELEASE: frozenset({"arbiter"}),
    E.RULE_REFUND: frozenset({"arbiter"}),
    E.RULE_SPLIT: frozenset({"arbiter"}),
}


def next_state(state: str, event: str) -> S | None:
    return TRANSITIONS.get((S(state), E(event)))


def allowed_events(state: str) -> list[E]:
    return [e for (s, e) in TRANSITIONS if s == S(state)]


def sources(event: E) -> frozenset[S]:
    return frozenset(s for (s, e) in TRANSITIONS if e == event)


def reachable(start: frozenset[S]) -> frozenset[S]:
    """The states an order in one of ``start`` can be in from then on, ``start`` included."""
    seen, todo = set(start), list(start)
    while todo:
        state = todo.pop()
        for (source, _event), target in TRANSITIONS.items():
            if source == state and target not in seen:
                seen.add(target)
                todo.append(target)
    return frozenset(seen)


# Payouts are made only for a pending outcome (services.payouts.plan; a hand-in too), and no
# transition leads back from one: an order in any other state has no payout row, and its
# readers need not ask for them.
MAY_HAVE_PAYOUTS = reachable(PENDING)
