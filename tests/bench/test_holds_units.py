"""Where `bench holds --payout-holds` puts the sellers who hold their payouts (no nodes)."""

from __future__ import annotations

import pytest

from bench import holds
from regtest_cluster.topology import load


def test_holding_sellers_live_on_the_seller_nodes_unless_named():
    assert holds.holder_nodes(load("hub"), None) == ["seller1", "seller2"]
    assert holds.holder_nodes(load("hub-holds"), None) == ["seller1", "seller2"]  # holder is not a seller
    assert holds.holder_nodes(load("hub-holds"), ["holder"]) == ["holder"]


def test_a_holder_the_topology_lacks_is_one_error_naming_its_nodes():
    with pytest.raises(ValueError, match=r"--holders: no node ghost in topology hub \(nodes: hub, buyer1, "):
        holds.holder_nodes(load("hub"), ["ghost"])
