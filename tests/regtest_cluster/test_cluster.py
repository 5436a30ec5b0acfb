"""The cluster on real bitcoind and LND: bring-up, payments, mining, funding, bad input."""

from __future__ import annotations

import os
import shutil
import socket
import stat

import pytest

from regtest_cluster.cluster import Cluster, ClusterError, ProcessBackend
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.state import status
from regtest_cluster.topology import parse
from regtest_cluster.waiting import wait_for
from tests.helpers import processes_under

pytestmark = pytest.mark.cluster

PAIR = {"name": "pair", "nodes": [{"name": "a", "funding_sats": 2_000_000}, {"name": "b"}],
        "channels": [{"from": "a", "to": "b", "capacity_sats": 500_000}]}


def test_cluster_hub_every_declared_channel_is_active(cluster):
    st = status(cluster)
    assert st["all_channels_active"]
    by_name = {n["name"]: n for n in st["nodes"]}
    assert by_name["hub"]["active_channels"] == 4
    for name in ("buyer1", "buyer2", "seller1", "seller2"):
        assert [c["peer"] for c in by_name[name]["channels"]] == ["hub"]
        assert by_name[name]["synced_to_chain"]


def test_cluster_pay_routes_buyer_through_hub_to_seller(cluster):
    seller = cluster.node("seller1")
    before = int(seller.rest.channelbalance()["local_balance"]["sat"])
    payment = cluster.pay("buyer1", "seller1", 12_345)
    assert payment["status"] == "SUCCEEDED"
    hops = payment["htlcs"][-1]["route"]["hops"]
    assert [h["pub_key"] for h in hops] == [cluster.node("hub").pubkey, seller.pubkey]
    # SUCCEEDED means the sender has the preimage; the receiver's commitment settles just after.
    wait_for(lambda: int(seller.rest.channelbalance()["local_balance"]["sat"]) == before + 12_345,
             timeout=10, what="seller1's channel balance to grow by 12345")


def test_lnd_listpayments_pages_through_every_payment(cluster):
    """lnd answers 100 payments a call unless told; the client must page (a soak's oracle
    once saw 4,000 payouts as missing)."""
    buyer = cluster.node("buyer2").rest
    hashes = [cluster.pay("buyer2", "hub", 1_000 + i)["payment_hash"] for i in range(3)]
    listed = [p["payment_hash"] for p in buyer.listpayments(page=2)]
    assert listed[-3:] == hashes and len(listed) == len(set(listed))
    assert listed == [p["payment_hash"] for p in buyer.listpayments()]


def test_cluster_mine_in_steps_keeps_every_node_synced(cluster):
    start = cluster.bitcoind.rpc.getblockcount()
    height = cluster.mine(20)
    assert height == start + 20
    assert {n.block_height() for n in cluster.nodes.values()} == {height}


def test_cluster_fund_node_confirms_on_chain(cluster):
    node = cluster.node("seller2")
    before = int(node.rest.walletbalance()["confirmed_balance"])
    cluster.fund("seller2", 123_456)
    assert int(node.rest.walletbalance()["confirmed_balance"]) == before + 123_456


def test_cluster_unknown_node_is_named(cluster):
    with pytest.raises(ClusterError, match=r"no node named 'seller9' \(nodes: hub, buyer1"):
        cluster.pay("buyer1", "seller9", 1000)


def test_cluster_nonpositive_amount_is_refused(cluster):
    with pytest.raises(ClusterError, match="amount must be positive"):
        cluster.fund("hub", 0)


def test_lnd_factory_line_graph_routes_end_to_end(lnd_factory):
    net = lnd_factory.line_graph(3)
    payment = net.pay("n0", "n2", 5_000)
    assert len(payment["htlcs"][-1]["route"]["hops"]) == 2


def test_bitcoind_fixture_has_a_mature_miner_wallet(bitcoind):
    assert bitcoind.rpc.getblockcount() == 101
    assert bitcoind.miner().getbalance() > 0


def test_start_busy_base_port_picks_another(cluster_env, node_binaries):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        base = busy.getsockname()[1]
        topo = parse({**PAIR, "base_port": base})
        c = Cluster(topo, node_binaries, new_run_dir(cluster_env.runs_dir, "busyport"))
        try:
            c.start()
            used = [c.bitcoind.ports.rpc, *(p for n in c.nodes.values() for p in vars(n.ports).values())]
            assert base not in used and min(used) > base
            assert status(c)["all_channels_active"]
        finally:
            c.stop()
            c.remove_run_dir()


def test_start_relay_port_taken_moves_that_node(cluster_env, node_binaries):
    # Another process takes b's advertised p2p port after it was picked and b's lnd is up,
    # just before the relay listens there: b restarts on new ports, and the channel opens.
    taken: list[socket.socket] = []

    class Thief(ProcessBackend):
        def nodes_ready(self, cluster):
            if not taken:
                busy = socket.socket()
                busy.bind(("127.0.0.1", cluster.nodes["b"].ports.p2p))
                busy.listen()
                taken.append(busy)
            super().nodes_ready(cluster)

    c = Cluster(parse(PAIR), node_binaries, new_run_dir(cluster_env.runs_dir, "relayport"), backend=Thief())
    try:
        c.start()
        stolen = taken[0].getsockname()[1]
        assert c.nodes["b"].ports.p2p != stolen
        assert c.backend.relay_client().status()["routes"]["b"]["listen"] == c.nodes["b"].ports.p2p
        assert status(c)["all_channels_active"]
    finally:
        for s in taken:
            s.close()
        c.stop()
        c.remove_run_dir()


def test_start_node_dying_reports_log_tail_and_run_folder_and_leaves_nothing(tmp_path, cluster_env, node_binaries):
    # A real lnd, given a flag it rejects, dies during start.
    wrapper = tmp_path / "lnd"
    wrapper.write_text(f'#!/bin/sh\nexec "{node_binaries.lnd}" "$@" --no-such-flag\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    binaries = type(node_binaries)(**{**vars(node_binaries), "lnd": wrapper})
    run_dir = new_run_dir(cluster_env.runs_dir, "dies")
    c = Cluster(parse(PAIR), binaries, run_dir)
    with pytest.raises(ClusterError) as err:
        c.start()
    message = str(err.value)
    assert "lnd-" in message and "exited unexpectedly" in message
    assert "no-such-flag" in message  # the log tail says why
    assert f"run folder kept: {run_dir}" in message
    assert processes_under(run_dir) == []
    assert os.path.isdir(run_dir)
    shutil.rmtree(run_dir)
