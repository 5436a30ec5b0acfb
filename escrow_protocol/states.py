"""Canonical order states and events. A marketplace may keep its own names inside;
what it shows the harness (through its driver) is in these words."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    CREATED = "CREATED"
    AWAITING_FUNDS = "AWAITING_FUNDS"
    FUNDED = "FUNDED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    DISPUTED = "DISPUTED"
    HELD_IN_CUSTODY = "HELD_IN_CUSTODY"
    RELEASE_PENDING = "RELEASE_PENDING"
    REFUND_PENDING = "REFUND_PENDING"
    SPLIT_PENDING = "SPLIT_PENDING"
    RELEASED = "RELEASED"
    REFUNDED = "REFUNDED"
    SPLIT = "SPLIT"
    EXPIRED = "EXPIRED"


class Event(StrEnum):
    INVOICE_ISSUED = "invoice_issued"
    ESCROW_OPENED = "escrow_opened"      # on-chain address or custodial hold made (modes without invoices)
    FUNDING_REORGED = "funding_reorged"  # the funding's confirmations were reorged away (I17)
    FUNDED = "funded"                    # ACCEPTED for the full amount (or k confirmations)
    FUNDING_TIMEOUT = "funding_timeout"
    SHIP = "ship"
    SHIP_TIMEOUT = "ship_timeout"
    DELIVERED = "delivered"              # courier webhook matching the buyer's address
    DELIVERY_TIMEOUT = "delivery_timeout"
    BUYER_CONFIRM = "buyer_confirm"
    DISPUTE_WINDOW_END = "dispute_window_end"
    OPEN_DISPUTE = "open_dispute"
    RULE_RELEASE = "rule_release"
    RULE_REFUND = "rule_refund"
    RULE_SPLIT = "rule_split"
    RULING_TIMEOUT_RELEASE = "ruling_timeout_release"
    RULING_TIMEOUT_REFUND = "ruling_timeout_refund"
    GUARDIAN_CANCEL = "guardian_cancel"
    GUARDIAN_CUSTODY = "guardian_custody"
    LOCK_LOST = "lock_lost"              # the node cancelled the hold behind the marketplace's back
    RELEASED = "released"
    REFUNDED = "refunded"
    SPLIT_DONE = "split_done"


TERMINAL = frozenset({State.RELEASED, State.REFUNDED, State.SPLIT, State.EXPIRED})
PENDING = frozenset({State.RELEASE_PENDING, State.REFUND_PENDING, State.SPLIT_PENDING})
# Where the buyer's funds are locked for the trade (I9: nothing ships or is disputed before this).
FUNDED_STATES = frozenset({State.FUNDED, State.SHIPPED, State.DELIVERED, State.DISPUTED, State.HELD_IN_CUSTODY})
