"""What every oracle check shares: violations, the context, and the state names.

The state names are the escrow protocol's; what they mean to an invariant is
stated here, by the oracle, not taken from any marketplace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


from escrow_protocol.states import TERMINAL as _TERMINAL

PPM = 1_000_000
SETTLING_CLAIMS = {"RELEASE_PENDING", "SPLIT_PENDING", "HELD_IN_CUSTODY"}
CANCELLING_CLAIMS = {"REFUND_PENDING", "EXPIRED"}
TERMINAL = {s.value for s in _TERMINAL}
AUTOMATIC = {"dispute_window_end", "ship_timeout", "delivery_timeout", "funding_timeout"}
RELEASE_GROUNDS = {"buyer_confirm", "dispute_window_end", "rule_release", "rule_split", "ruling_timeout_release"}


@dataclass
class Violation:
    invariant: str
    order_id: int | None
    message: str
    evidence: dict = field(default_factory=dict)


@dataclass
class Context:
    """What the oracle needs besides node truth: the rules' parameters and who is who."""

    settings: dict                        # fee_ppm, windows, margins, fee limit (the app's configuration)
    user_nodes: dict[int, str]            # user id -> the node that user pays from or is paid to
    expected_final: dict[int, set[str]] = field(default_factory=dict)  # order -> acceptable end states
    race_results: list[list[int]] = field(default_factory=list)        # status codes of concurrent requests
    forged_evidence: set[int] = field(default_factory=set)             # orders that only ever got forged proof
    operator_gone: bool = False
    reorged_blocks: list[str] = field(default_factory=list)            # blocks a scenario invalidated
    custodial_snapshots: list[dict] = field(default_factory=list)      # mid-run ledger snapshots (I14)


def _at(e: dict) -> float:
    return datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()


def _first(events: list[dict], **match) -> dict | None:
    return next((e for e in events if all(e.get(k) == v for k, v in match.items())), None)


def expected_deltas(o: dict, fee_ppm: int) -> tuple[int, int, int]:
    """(buyer, seller, hub) channel-balance change the rules give for an outcome."""
    price, state = o["price_sats"], o["state"]
    if state == "RELEASED":
        fee = price * fee_ppm // PPM
        return -price, price - fee, fee
    if state == "SPLIT":
        buyer_part = price * (o["buyer_share_ppm"] or 0) // PPM
        seller_gross = price - buyer_part
        fee = seller_gross * fee_ppm // PPM
        return -seller_gross, seller_gross - fee, fee
    return 0, 0, 0
