"""Every router of the app: ``ROUTERS`` in the order they appear in the OpenAPI document,
``DISPATCH`` in the order the app tries them.

FastAPI matches a request against every route of every included router in turn, so a
request for the last router paid for some sixty path matches first (15 % of a read by id
in-process). The routers a marketplace serves most, its browsing and its order polling,
are tried first. No two routes match the same request (``tests/reference_app/
test_routes_order.py``), so the order decides nothing but the cost.
"""

from . import admin, auctions, auth, disputes, feedback, health, listings, notifications, onchain, orders, users, wallet, webhooks

ROUTERS = [health.router, auth.router, users.router, listings.router, orders.router,
           disputes.router, webhooks.router, onchain.router, wallet.router, auctions.router, feedback.router,
           notifications.router, admin.router]
HOT = [listings.router, orders.router]
DISPATCH = HOT + [router for router in ROUTERS if router not in HOT]
