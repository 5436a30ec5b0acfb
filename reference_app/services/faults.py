"""Named crash points in the settle, payout, refund and withdrawal paths, for fault injection.

Set ``ESCROWLAB_FAULT_POINTS='["after_settle"]'`` and the process dies
(SIGKILL-like, no cleanup) the first time it reaches that point, as a crash
would. Scenarios restart it and check that nothing was lost or paid twice.
"""

from __future__ import annotations

import os

# Each point sits where a crash leaves work half-done: something committed, the node step after it not yet
# done or not yet recorded. Restarted, the app must finish it exactly once (scenarios/torture.py).
POINTS = (
    # ln_hold: modes/ln_hold.py and payouts.py
    "after_claim_release", "after_settle", "after_payout_marker", "after_payout_sent", "after_cancel",
    # custodial escrow: the outcome's ledger transfer posted, its transition not yet (one uncommitted transaction)
    "custodial_outcome_uncommitted",
    # custodial Lightning withdrawal: reserved (debited) but not sent; sent but not recorded final
    "after_ln_withdraw_reserve", "after_ln_withdraw_sent",
    # custodial on-chain withdrawal batch: claimed (requests BATCHED) but not sent; sent but not recorded
    "after_batch_claim", "after_batch_sent",
    # onchain_multisig: the spend recorded but not broadcast; broadcast but the outcome not recorded
    "after_spend_recorded", "after_spend_broadcast",
)


def point(name: str, enabled: list[str]) -> None:
    if name in enabled:
        os._exit(137)


# Planted bugs: deliberate defects, one at a time, that the scenario oracle
# must catch (each names the invariant it breaks). Refused in production.
PLANTED_BUGS = {
    "skip_cas": "transitions ignore the current state (no compare-and-swap): I6",
    "double_payout": "a settled payout is paid a second time: I3",
    "refund_after_shipment": "a missed delivery window refunds instead of opening a dispute: I12",
    "ignore_webhook_signature": "courier webhooks are not authenticated: I4",
    "release_without_delivery": "shipping releases the payment at once: I4",
    "settle_before_claim": "a ruling settles the hold before claiming its state: I5",
    "no_guardian": "the app ignores the HTLC expiry (no guardian, no horizon), so LND cancels holds: I7",
    "funded_without_accept": "an unpaid (OPEN) invoice counts as funding: I9",
    "fee_from_escrow": "the payout's routing budget comes out of the seller's amount: I13",
    "trust_payout_invoice": "payout invoices are paid without checking the amount: I10",
    "stale_deadline": "a due deadline is claimed without re-checking the order: a ship landing in the ship "
                      "deadline's block is disputed by delivery_timeout at once (an order that cannot end): I2, I15",
    "seller_confirms": "the seller may confirm receipt of its own order, releasing it: I4, M1 role",
    "dispute_window_short": "the dispute window (the DELIVERED deadline) ends one block early: M5 deadline, I2",
    "ship_unfunded": "ship is accepted from AWAITING_FUNDS (the funding check skipped in one state): I9, M2 state",
    "payout_expiry_unchecked": "a payout invoice that expires too soon is accepted and paid: I10",
    "custodial_debit_after_send": "a custodial Lightning withdrawal pays the node first and debits the ledger "
                                  "afterwards, so concurrent withdrawals overdraw: I1, I3",
    "stream_ignores_last_event_id": "the notification stream resumes at the newest notification, not after "
                                    "Last-Event-ID, so a client that reconnects never gets what came while it "
                                    "was away (its inbox has it): I18",
    "webhook_no_retry": "a webhook POST that fails is given up at once, not retried, so an endpoint that was "
                        "down for a moment never gets what came meanwhile (the inbox has it): I18",
}


def planted(settings, name: str) -> bool:
    return settings.planted_bug == name
