"""Marketplace settings the harness asks for, in one place, in the escrow protocol's names.

Each preset is what a kind of run needs of the rules; the marketplace reports what it
actually runs with (``Marketplace.rules()``), and the oracle judges by that report,
never by a copy of a marketplace's defaults.
"""

from __future__ import annotations

ADDRESSES = {"buyer1": "1 Main Street, Springfield", "buyer2": "22 Elm Road, Shelbyville"}

# Scenarios and the demo: trade windows short in blocks and long in wall time, so stories
# move time by mining; passwords hashed cheaply (no story is about argon2's cost).
SCENARIO_SETTINGS = dict(funding_timeout_blocks=6, ship_window_blocks=6, delivery_window_blocks=6,
                         dispute_window_blocks=6, ruling_window_blocks=500, worker_interval_s=0.1,
                         payout_retry_base_s=0.2, webhook_retry_base_s=0.2,
                         # a story's app is short-lived: argon2 at full cost was most of its CPU
                         password_hashing="light")

# Load runs: windows long enough that load never times orders out, short enough that the
# oracle's drain mines past them quickly. Tokens outlive a soak; every virtual user calls
# from one address, which per-address rate limits are not for.
LOAD_SETTINGS = dict(funding_timeout_blocks=30, ship_window_blocks=30, delivery_window_blocks=30,
                     dispute_window_blocks=30, ruling_window_blocks=40, worker_interval_s=0.2,
                     access_token_ttl_s=12 * 3600, rate_limits_enabled=False)

# The escrow benchmark: nothing times out while it runs. The reference app's worker is woken
# by what it must act on (a hold accepted, an outcome committed, a payment ended), so its
# tick only looks for deadlines: polling faster would measure polling.
BENCH_SETTINGS = dict(funding_timeout_blocks=144, ship_window_blocks=144, delivery_window_blocks=144,
                      dispute_window_blocks=144, ruling_window_blocks=500, worker_interval_s=0.5,
                      payout_retry_base_s=0.2, rate_limits_enabled=False)

# The simulator's live mode: its windows come from its config; these are the rest.
LIVE_SETTINGS = dict(access_token_ttl_s=6 * 3600, rate_limits_enabled=False)
