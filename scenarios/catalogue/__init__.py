"""The scenario catalogue: every scenario by name."""

from __future__ import annotations

from harness.scenario import Scenario

from . import custodial, faults, flows, inputs, onchain, races, time

ALL: dict[str, type[Scenario]] = {s.name: s for mod in (flows, time, races, faults, inputs, onchain, custodial) for s in mod.SCENARIOS}

# Each planted bug, and the scenario that exposes it.
BUG_SCENARIOS = {
    "skip_cas": "double_release_race",
    "double_payout": "release_after_delivery",
    "refund_after_shipment": "delivery_timeout_opens_dispute",
    "ignore_webhook_signature": "forged_webhook",
    "release_without_delivery": "release_after_delivery",
    "settle_before_claim": "dispute_ruling_refund",
    "no_guardian": "guardian_custody_for_disputed",
    "funded_without_accept": "unpaid_order_expires",
    "fee_from_escrow": "buyer_confirms_early",
    "trust_payout_invoice": "wrong_amount_payout_invoice",
    "stale_deadline": "ship_at_ship_deadline",
}
