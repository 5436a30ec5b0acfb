"""What a party can ask of a marketplace about an order, and who may be asking.

The harness speaks these names to a driver (``Marketplace.attempt``); each driver
maps them to its marketplace's own requests.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    SHIP = "ship"                      # seller: tracking number and courier
    CONFIRM = "confirm"                # buyer: received, release to the seller
    DISPUTE = "dispute"                # buyer or seller
    RULE = "rule"                      # arbiter: release, refund or split
    PAYOUT_INVOICE = "payout_invoice"  # the payee hands in an invoice for its payout
    VIEW = "view"                      # read the order


ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)
# Who can ask, by relation to the order; "stranger" is any other registered user.
ROLES: tuple[str, ...] = ("buyer", "seller", "arbiter", "admin", "stranger")
