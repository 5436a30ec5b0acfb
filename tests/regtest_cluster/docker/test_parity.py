"""The process backend's own test bodies, run on the docker backend (this folder's
fixtures build containers): bring-up, a payment, mining, funding, and ln_hold escrow
through the marketplace."""

from __future__ import annotations

import pytest

from tests.reference_app.escrow.test_ln_hold import (  # noqa: F401
    test_dispute_ruling_split_pays_both_from_the_hub,
    test_release_happy_path_pays_seller_price_minus_fee,
    test_ship_timeout_cancels_hold_and_refunds_buyer,
)
from tests.regtest_cluster.test_cluster import (  # noqa: F401
    test_bitcoind_fixture_has_a_mature_miner_wallet,
    test_cluster_fund_node_confirms_on_chain,
    test_cluster_hub_every_declared_channel_is_active,
    test_cluster_mine_in_steps_keeps_every_node_synced,
    test_cluster_pay_routes_buyer_through_hub_to_seller,
    test_lnd_factory_line_graph_routes_end_to_end,
)

pytestmark = [pytest.mark.cluster, pytest.mark.docker]
