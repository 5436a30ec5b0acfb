"""Pure formulas of the escrow rules: amounts in sats, heights in blocks.

These are the written rules' arithmetic, shared by a marketplace and by the
simulator. The harness's oracle does not use them: it states its own
expectations, so that a wrong formula here is still caught.
"""

from __future__ import annotations

import math

PPM = 1_000_000
MIN_HOLD_CLTV = 24  # LND's floor for AddHoldInvoice's cltv_expiry (v0.21)

# The longest total route CLTV a payer's wallet accepts at its defaults (docs/ldk.md). A buyer
# pays the marketplace's node directly, so the route's total is the hold invoice's own CLTV:
# a hold above a payer's cap cannot be paid from that wallet at all.
PAYER_CLTV_CAPS = {"ldk": 1008, "lnd": 2016}


def fee_sats(amount_sats: int, fee_ppm: int) -> int:
    """The marketplace's fee on an amount: rounded down, to the sat."""
    return amount_sats * fee_ppm // PPM


def split_shares(price_sats: int, buyer_share_ppm: int, fee_ppm: int) -> tuple[int, int, int]:
    """(buyer refund, seller payout, fee) of a split: the buyer's part is rounded down,
    the fee is taken from the seller's part only, and the three add up to the price."""
    buyer = price_sats * buyer_share_ppm // PPM
    fee = fee_sats(price_sats - buyer, fee_ppm)
    return buyer, price_sats - buyer - fee, fee


def hold_cltv_blocks(ship_window_blocks: int, delivery_window_blocks: int, dispute_window_blocks: int,
                     speedup_factor: float, guardian_margin_blocks: int, hold_expiry_delta_blocks: int) -> int:
    """The hold invoice's CLTV: the trade windows stretched for fast blocks (I8), plus
    the guardian's margin and LND's own hold expiry delta, never under LND's floor."""
    trade = ship_window_blocks + delivery_window_blocks + dispute_window_blocks
    return max(MIN_HOLD_CLTV, math.ceil(trade * speedup_factor) + guardian_margin_blocks + hold_expiry_delta_blocks)


def lock_horizon(htlc_expiry_height: int, hold_expiry_delta_blocks: int, guardian_margin_blocks: int) -> int:
    """The height at which the guardian must act on a held HTLC (I7)."""
    return htlc_expiry_height - hold_expiry_delta_blocks - guardian_margin_blocks


def payers_refusing(hold_cltv: int, caps: dict[str, int] | None = None) -> dict[str, int]:
    """The payer implementations (with their caps) that cannot pay a hold of ``hold_cltv`` blocks."""
    return {impl: cap for impl, cap in (caps or PAYER_CLTV_CAPS).items() if hold_cltv > cap}


def payer_notice(hold_cltv: int) -> str | None:
    """What a buyer is told before funding when some wallets cannot pay this hold; None if all can."""
    refusing = payers_refusing(hold_cltv)
    if not refusing:
        return None
    able = {impl: cap for impl, cap in PAYER_CLTV_CAPS.items() if impl not in refusing}
    who = ", ".join(f"{impl.upper()} (caps a route at {cap} blocks)" for impl, cap in sorted(refusing.items()))
    rest = (f"; wallets on {', '.join(f'{i.upper()} (cap {c})' for i, c in sorted(able.items()))} can"
            if able else "; no wallet at its defaults can")
    return (f"this hold invoice asks a CLTV of {hold_cltv} blocks: wallets on {who} cannot pay it at their "
            f"defaults{rest}")


def max_trade_blocks(cltv_cap: int, speedup_factor: float, guardian_margin_blocks: int,
                     hold_expiry_delta_blocks: int) -> int:
    """The longest ship + delivery + dispute windows (in blocks) whose hold fits under ``cltv_cap``."""
    return max(0, math.floor((cltv_cap - guardian_margin_blocks - hold_expiry_delta_blocks) / speedup_factor))
