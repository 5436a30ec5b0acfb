"""The web dashboard: server-rendered Jinja2 pages over the app's own services (no build step)."""
