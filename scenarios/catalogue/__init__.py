"""The scenario catalogue: every scenario by name.

Each module of this package with a ``SCENARIOS`` list is part of the catalogue (a new
theme or escrow mode is a new module; nothing here to edit), and each trace in
``scenarios/traces/`` that ``escrowlab explore --to-scenario`` wrote is one scenario
that replays it.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

from harness.scenario import Scenario

# The run order of the themes the catalogue starts with; any other module follows, by name.
FIRST = ("flows", "time", "races", "faults", "partition", "inputs", "onchain", "custodial")
TRACES = Path(__file__).resolve().parent.parent / "traces"


def _modules() -> list:
    names = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])]
    ordered = [n for n in FIRST if n in names] + sorted(n for n in names if n not in FIRST)
    return [importlib.import_module(f"{__name__}.{n}") for n in ordered]


def _traces() -> list[type[Scenario]]:
    from harness.explore.history import trace_scenario

    return [trace_scenario(path.stem, json.loads(path.read_text())) for path in sorted(TRACES.glob("*.json"))]


ALL: dict[str, type[Scenario]] = {s.name: s for mod in _modules() for s in getattr(mod, "SCENARIOS", ())}
ALL.update({s.name: s for s in _traces()})

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
    "seller_confirms": "release_after_delivery",
    "dispute_window_short": "dispute_in_window_last_block",
    "ship_unfunded": "unpaid_order_expires",
    "payout_expiry_unchecked": "short_expiry_payout_invoice",
    "custodial_debit_after_send": "custodial_concurrent_ln_withdrawals",
    "stream_ignores_last_event_id": "notification_stream_resumes",
    "webhook_no_retry": "webhook_endpoint_down",
}
