"""The expected answer of every cell of the authorization matrix (see authz.py).

A row maps a role to ALLOW or DENY, or to (own, other) for roles that own such
objects: own is the sender's object, other is someone else's (the IDOR attempt).
"*" is every role not named in the row. Review a change here as you would a change
to the permission code.

The orders cells point at undisputed orders, so an arbiter (not a party) is denied
them: arbiters see only orders that need or had a ruling. The allowed side is shown
by tests/reference_app/test_orders_arbiter_scope.py."""

from __future__ import annotations

A, D = "allow", "deny"

MATRIX: dict[str, dict] = {
    "GET /health": {"*": A},
    "GET /rules": {"*": A},   # the rules the marketplace runs with: public, like its fee
    "POST /auth/register": {"*": A},
    "POST /auth/login": {"*": A},
    "POST /auth/refresh": {"*": A},
    "POST /auth/totp/enrol": {"*": A, "anonymous": D},
    "POST /auth/totp/verify": {"*": A, "anonymous": D},
    "POST /auth/totp/disable": {"*": A, "anonymous": D},
    "GET /me": {"*": A, "anonymous": D},
    "PATCH /me": {"*": A, "anonymous": D},
    "GET /me/address": {"*": A, "anonymous": D},
    "PUT /me/address": {"*": A, "anonymous": D},
    "PUT /me/payout-node": {"*": A, "anonymous": D},
    "DELETE /me/payout-node": {"*": A, "anonymous": D},
    "GET /me/notifications": {"*": A, "anonymous": D},
    "POST /me/notifications/read": {"*": A, "anonymous": D},
    "GET /admin/users": {"*": D, "admin": A},
    "POST /admin/users/{user_id}/roles": {"*": D, "admin": A},
    "POST /admin/users/{user_id}/block": {"*": D, "admin": A},
    "GET /listings": {"*": A},
    "POST /listings": {"*": D, "seller": A},
    "GET /listings/{listing_id}": {"*": A, "seller": (A, A)},
    "PATCH /listings/{listing_id}": {"*": D, "seller": (A, D)},
    "DELETE /listings/{listing_id}": {"*": D, "seller": (A, D), "admin": A},
    "POST /orders": {"*": A, "anonymous": D},
    "GET /orders": {"*": A, "anonymous": D},
    "GET /orders/{order_id}": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "GET /orders/{order_id}/events": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "POST /orders/{order_id}/ship": {"*": D, "buyer": (D, D), "seller": (A, D)},
    "POST /orders/{order_id}/confirm": {"*": D, "buyer": (A, D), "seller": (D, D)},
    "POST /orders/{order_id}/payout-invoice": {"*": D, "buyer": (A, D), "seller": (A, D)},
    "POST /orders/{order_id}/dispute": {"*": D, "buyer": (A, D), "seller": (A, D)},
    "GET /orders/{order_id}/dispute": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "POST /orders/{order_id}/dispute/messages": {"*": D, "buyer": (A, D), "seller": (A, D)},
    "POST /orders/{order_id}/dispute/ruling": {"*": D, "buyer": (D, D), "seller": (D, D)},
    "GET /disputes": {"*": D, "arbiter": A},
    "POST /webhooks/courier/{courier}": {"*": D},
    "PUT /me/onchain-keys": {"*": A, "anonymous": D},
    "GET /orders/{order_id}/escrow": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "GET /orders/{order_id}/psbt": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "POST /orders/{order_id}/psbt": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "GET /wallet": {"*": A, "anonymous": D},
    "POST /wallet/deposits/ln": {"*": A, "anonymous": D},
    "POST /wallet/withdrawals/ln": {"*": A, "anonymous": D},
    "POST /wallet/withdrawals/onchain": {"*": A, "anonymous": D},
    "GET /wallet/withdrawals": {"*": A, "anonymous": D},
    "GET /admin/reconcile": {"*": D, "admin": A},
    "GET /admin/ledger": {"*": D, "admin": A},
    "POST /auctions": {"*": D, "seller": A},
    "GET /auctions": {"*": A},
    "GET /auctions/{auction_id}": {"*": A},
    "POST /auctions/{auction_id}/bids": {"*": A, "anonymous": D, "seller": D},
    "POST /auctions/{auction_id}/close": {"*": A, "anonymous": D},
    "POST /orders/{order_id}/rating": {"*": D, "buyer": (A, D), "seller": (A, D)},
    "GET /users/{user_id}/reputation": {"*": A},
    "GET /orders/{order_id}/messages": {"*": D, "buyer": (A, D), "seller": (A, D), "admin": A},
    "POST /orders/{order_id}/messages": {"*": D, "buyer": (A, D), "seller": (A, D)},
    "GET /notifications/stream": {"*": A, "anonymous": D},
    "GET /me/webhooks": {"*": A, "anonymous": D},
    "POST /me/webhooks": {"*": A, "anonymous": D},
    "DELETE /me/webhooks/{endpoint_id}": {"*": (A, D), "anonymous": D},
    "GET /admin/metrics": {"*": D, "admin": A},
    "GET /transactions": {"*": A, "anonymous": D},
    "GET /transactions.csv": {"*": A, "anonymous": D},
    "GET /me/export": {"*": A, "anonymous": D},
    "POST /admin/users/{user_id}/erase": {"*": D, "admin": A},
    "POST /auth/logout-all": {"*": A, "anonymous": D},
    "POST /me/erase": {"*": A, "anonymous": D},
}
