"""LDK nodes on the docker backend: the process backend's LDK test bodies, run on the hub-ldk
topology as containers (ldkd's image is built FROM scratch from the provisioned ldkd)."""

from __future__ import annotations

import pytest

from tests.regtest_cluster.test_ldk import (  # noqa: F401  (ldkd_built: skipped or failed as there)
    ldkd_built,
    test_channels_active_and_ldk_agrees_with_lnd,
    test_ldk_buyer_pays_hub_hold_invoice,
    test_ldk_buyer_pays_lnd_seller,
    test_lnd_buyer_pays_ldk_seller,
)

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.topology("hub-ldk")]


def test_ldk_nodes_are_containers_of_the_ldkd_image(cluster) -> None:
    for name in ("buyer2", "seller2"):
        node = cluster.node(name)
        container = node.daemon._container
        container.reload()
        assert container.status == "running" and container.image.tags == [cluster.backend.images.ldk], name
        assert node.p2p_host == f"{container.name}:9735"  # peers dial it on the cluster's network
        assert node.api_url.startswith("http://127.0.0.1:")  # the harness, through the published port
        assert (node.datadir / "ldkd.log").is_file()  # its log in the run folder, as a process's
