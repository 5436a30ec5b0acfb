"""What a scenario acts on: the cluster, a marketplace behind its driver, and the parties.

The marketplace is any ``harness.driver.Marketplace``; by default the reference app
as its own process (``harness.http.ReferenceMarketplace``), so faults can kill it and
a restart reconciles with LND.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.actors import Arbiter, Buyer, Courier, Party, Seller
from harness.driver import Marketplace
from harness.http import ADMIN, ReferenceMarketplace
from harness.presets import ADDRESSES, SCENARIO_SETTINGS
from regtest_cluster.cluster import Cluster

# Builds a marketplace driver for a cluster and a run folder (``--marketplace module:Class``).
MarketplaceFactory = Callable[[Cluster, Path], Marketplace]

__all__ = ["ADDRESSES", "ADMIN", "Cast", "MarketplaceFactory", "World"]


class Cast:
    """Registering a trade's parties. Needs ``market``, ``cluster`` and ``admin``;
    shared by scenario worlds and test markets."""

    def buyer(self, node: str = "buyer1", bind: bool = False) -> Buyer:
        buyer = Buyer.register(self.market, node, ["buyer"], self.cluster.node(node), ADDRESSES[node])
        if bind:
            buyer.bind_payout_node()
        return buyer

    def seller(self, node: str = "seller1", bind: bool = True) -> Seller:
        seller = Seller.register(self.market, node, ["seller"], self.cluster.node(node))
        if bind:
            seller.bind_payout_node()
        return seller

    def arbiter(self, name: str = "arbiter") -> Arbiter:
        arbiter = Arbiter.register(self.market, name, ["buyer"])
        self.market.make_arbiter(arbiter)
        return arbiter

    def courier(self, name: str = "fastship") -> Courier:
        return Courier(self.market, name)


class World(Cast):
    def __init__(self, cluster: Cluster, run_dir: Path, marketplace: MarketplaceFactory | None = None) -> None:
        self.cluster = cluster
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.market: Marketplace = (marketplace or ReferenceMarketplace)(cluster, run_dir)

    @property
    def admin(self) -> Party:
        return self.market.admin

    def start_app(self, settings: dict | None = None) -> None:
        self.market.start({**SCENARIO_SETTINGS, **(settings or {})})

    def restart_app(self, **extra) -> None:
        """Start the marketplace again on the same store (after a crash or a stop)."""
        self.market.restart(**extra)

    def stop_app(self) -> None:
        self.market.stop()
        self.market.close()

    # --- time
    def mine(self, blocks: int) -> int:
        return self.cluster.mine(blocks)

    def mine_to(self, height: int) -> int:
        return self.mine(max(0, height - self.cluster.bitcoind.rpc.getblockcount()))
