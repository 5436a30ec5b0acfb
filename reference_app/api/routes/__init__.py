"""Every router of the app, in the order they appear in the OpenAPI document."""

from . import auth, disputes, health, listings, orders, users, webhooks

ROUTERS = [health.router, auth.router, users.router, listings.router, orders.router,
           disputes.router, webhooks.router]
