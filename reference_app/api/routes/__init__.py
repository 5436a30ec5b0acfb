"""Every router of the app, in the order they appear in the OpenAPI document."""

from . import admin, auctions, auth, disputes, feedback, health, listings, notifications, onchain, orders, users, wallet, webhooks

ROUTERS = [health.router, auth.router, users.router, listings.router, orders.router,
           disputes.router, webhooks.router, onchain.router, wallet.router, auctions.router, feedback.router,
           notifications.router, admin.router]
