"""Escrow mode names."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    LN_HOLD = "ln_hold"                    # a hold invoice on the marketplace's hub
    ONCHAIN_MULTISIG = "onchain_multisig"  # a P2WSH 2-of-3 with a timelocked default branch
    CUSTODIAL = "custodial"                # the marketplace's ledger over its own wallet and hub


MODE_NAMES: tuple[str, ...] = tuple(m.value for m in Mode)
