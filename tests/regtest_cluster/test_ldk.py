"""LDK nodes (ldkd, on ldk-node) in a real regtest cluster: the hub-ldk topology.

buyer2 and seller2 run ldkd; the hub, buyer1 and seller1 run LND. Nothing is mocked: every
payment moves real sats over real channels, and each side's own API is asked what it saw.

Skipped when ldkd is not built (`escrowlab nodes install --ldk` builds it), unless
ESCROWLAB_REQUIRE_LDK=1, where a missing ldkd fails.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading

import pytest

from regtest_cluster.cluster import ClusterError
from regtest_cluster.env import ClusterEnv
from regtest_cluster.faults import Faults
from regtest_cluster.nodes.ldk import LdkError, LdkNode
from regtest_cluster.nodes.wallet import wallet
from regtest_cluster.provision import ProvisionError
from regtest_cluster.provision import ldk as ldk_provision
from regtest_cluster.state import status as cluster_status
from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.topology("hub-ldk")


@pytest.fixture(autouse=True)
def ldkd_built() -> None:
    try:
        found = ldk_provision.find(ClusterEnv.from_environ().cache_dir)
    except ProvisionError as exc:
        pytest.fail(str(exc), pytrace=False)
    if found is None:
        reason = f"ldkd (the LDK node) is not built: {ldk_provision.INSTALL_HINT}"
        if os.environ.get("ESCROWLAB_REQUIRE_LDK") == "1":
            pytest.fail(f"ESCROWLAB_REQUIRE_LDK=1 but {reason}", pytrace=False)
        pytest.skip(reason)


def _hash_pair() -> tuple[bytes, bytes]:
    preimage = secrets.token_bytes(32)
    return preimage, hashlib.sha256(preimage).digest()


def test_channels_active_and_ldk_agrees_with_lnd(cluster) -> None:
    st = cluster_status(cluster)
    assert st["all_channels_active"], st
    by_name = {n["name"]: n for n in st["nodes"]}
    assert {n: by_name[n]["impl"] for n in by_name} == {
        "hub": "lnd", "buyer1": "lnd", "buyer2": "ldk", "seller1": "lnd", "seller2": "ldk"}
    height = cluster.bitcoind.rpc.getblockcount()
    hub = cluster.node("hub")
    hub_channels = {c["remote_pubkey"]: c for c in hub.rest.listchannels()}
    for name, opener in (("buyer2", True), ("seller2", False)):
        node = cluster.node(name)
        assert isinstance(node, LdkNode)
        s = by_name[name]
        assert s["running"] and s["active_channels"] == 1 and s["channels"][0]["peer"] == "hub", s
        info = node.client.info()
        assert info["node_id"] == node.pubkey and info["alias"] == name
        assert info["block_height"] == height and info["synced"], info
        # LDK accepts an announced channel only with a listening address and an alias: it has both
        assert info["listening_addresses"] and info["announcement_addresses"] == [node.p2p_host]
        [ch] = node.client.channels()
        assert ch["is_usable"] and ch["is_channel_ready"] and ch["is_announced"], ch
        assert ch["counterparty_node_id"] == hub.pubkey and ch["is_outbound"] is opener
        # the hub's LND sees the same channel: same funding outpoint, capacity, initiator, active
        lnd_side = hub_channels[node.pubkey]
        assert lnd_side["active"] and lnd_side["channel_point"] == ch["funding_txo"], (lnd_side, ch)
        assert int(lnd_side["capacity"]) == ch["capacity_sats"] == 10_000_000
        assert bool(lnd_side.get("initiator")) is (not opener)
        # what LDK can send is what LND holds for the remote side, less LDK's channel reserve
        assert ch["outbound_capacity_msat"] // 1000 <= int(lnd_side["remote_balance"])
        assert ch["inbound_capacity_msat"] // 1000 <= int(lnd_side["local_balance"])
        assert int(lnd_side["remote_balance"]) - ch["outbound_capacity_msat"] // 1000 <= 200_000
    # buyer2 pushed 2M sats to the hub on open, as the topology says
    assert int(hub_channels[cluster.node("buyer2").pubkey]["local_balance"]) == 2_000_000
    # each LDK node learned every public channel from gossip, with both directions' policies
    for name in ("buyer2", "seller2"):
        assert cluster.node(name).public_edges_with_policies() >= 4


def test_lnd_buyer_pays_ldk_seller(cluster) -> None:
    seller2 = cluster.node("seller2")
    payment = cluster.pay("buyer1", "seller2", 50_000)
    assert payment["status"] == "SUCCEEDED"
    received = seller2.client.wait_payment(payment["payment_hash"])
    assert received["status"] == "succeeded" and received["direction"] == "inbound", received
    assert received["amount_msat"] == 50_000_000 and received["kind"] == "bolt11"
    assert received["preimage"] == payment["payment_preimage"]


def test_ldk_buyer_pays_lnd_seller(cluster) -> None:
    seller1 = cluster.node("seller1")
    payment = cluster.pay("buyer2", "seller1", 60_000)
    assert payment["status"] == "SUCCEEDED" and payment["direction"] == "outbound", payment
    assert payment["amount_msat"] == 60_000_000
    invoice = seller1.rest.lookup_invoice(bytes.fromhex(payment["payment_hash"]))
    assert invoice["state"] == "SETTLED" and int(invoice["amt_paid_sat"]) == 60_000
    # ldk-node records the preimage of what it paid
    assert hashlib.sha256(bytes.fromhex(payment["preimage"])).hexdigest() == payment["payment_hash"]


def test_ldk_buyer_pays_hub_hold_invoice(cluster) -> None:
    """The marketplace's escrow: the hub issues a hold invoice, LDK pays, the hub holds, then settles."""
    hub, buyer2 = cluster.node("hub"), cluster.node("buyer2")
    preimage, payment_hash = _hash_pair()
    invoice = hub.rest.add_hold_invoice(payment_hash, 30_000, cltv_expiry=144, memo="ldk escrow")
    started = buyer2.client.pay(invoice["payment_request"])
    assert started["payment_hash"] == payment_hash.hex()
    wait_for(lambda: hub.rest.lookup_invoice(payment_hash)["state"] == "ACCEPTED", timeout=30,
             what="the hub's hold invoice ACCEPTED")
    held = buyer2.client.payment(started["payment_id"])
    assert held["status"] == "pending", held
    accepted = hub.rest.lookup_invoice(payment_hash)
    assert int(accepted["amt_paid_msat"]) == 30_000_000 or sum(
        int(h["amt_msat"]) for h in accepted.get("htlcs", []) if h.get("state") == "ACCEPTED") == 30_000_000
    hub.rest.settle_invoice(preimage)
    done = buyer2.client.wait_payment(started["payment_id"])
    assert done["status"] == "succeeded" and done["preimage"] == preimage.hex(), done
    assert hub.rest.lookup_invoice(payment_hash)["state"] == "SETTLED"


@pytest.mark.allow_log(r"preimage doesn't match the hash")  # the wrong preimage tried on purpose
def test_ldk_seller_receives_for_hash_and_claims(cluster) -> None:
    """A hold-like receive on LDK: the hub pays an invoice for a hash; seller2 holds it, then claims."""
    hub, seller2 = cluster.node("hub"), cluster.node("seller2")
    preimage, payment_hash = _hash_pair()
    invoice = seller2.client.receive_for_hash(payment_hash, 40_000_000, description="payout", expiry_secs=600)
    assert invoice["payment_hash"] == payment_hash.hex()
    first = hub.rest.send_payment(invoice["invoice"], wait=False)
    assert first["status"] == "IN_FLIGHT", first
    held = seller2.client.wait_claimable(payment_hash)
    height = cluster.bitcoind.rpc.getblockcount()
    assert held["status"] == "pending" and held["claimable_amount_msat"] == 40_000_000, held
    assert held["claim_deadline"] > height, (held, height)
    assert hub.rest.track_payment(payment_hash)["status"] == "IN_FLIGHT"
    with pytest.raises(LdkError, match="InvalidPaymentPreimage"):
        seller2.client.claim_for_hash(payment_hash, secrets.token_bytes(32))
    seller2.client.claim_for_hash(payment_hash, preimage)
    wait_for(lambda: hub.rest.track_payment(payment_hash)["status"] == "SUCCEEDED", timeout=30,
             what="the hub's payment SUCCEEDED")
    done = seller2.client.wait_payment(payment_hash)
    assert done["status"] == "succeeded", done
    # ldkd takes the received amount from ldk-node's PaymentReceived event, which its event thread
    # handles just after the payment store says succeeded: on a busy machine CI once read the
    # payment in between (status succeeded, received_amount_msat None).
    wait_for(lambda: done.update(seller2.client.payment(payment_hash)) or done["received_amount_msat"] is not None,
             timeout=30, what="seller2's PaymentReceived event")
    assert done["received_amount_msat"] == 40_000_000, done


@pytest.mark.allow_log(r"failed: (final_outcome=)?incorrect_payment_details")  # the hub's LND: refused on purpose
def test_ldk_seller_fails_held_payment_back(cluster) -> None:
    hub, seller2 = cluster.node("hub"), cluster.node("seller2")
    _preimage, payment_hash = _hash_pair()
    invoice = seller2.client.receive_for_hash(payment_hash, 25_000_000, description="refused", expiry_secs=600)
    hub.rest.send_payment(invoice["invoice"], wait=False)
    seller2.client.wait_claimable(payment_hash)
    seller2.client.fail_for_hash(payment_hash)
    wait_for(lambda: hub.rest.track_payment(payment_hash)["status"] == "FAILED", timeout=30,
             what="the hub's payment FAILED")
    assert seller2.client.payment(payment_hash)["status"] == "failed"


@pytest.mark.allow_log(r"Failed to send payment", r"Failed to find route for payment")
def test_ldk_refuses_hold_invoice_above_its_cltv_cap(cluster) -> None:
    """LDK as payer caps a route's total CLTV at 1008 blocks by default (LND: 2016). A hold invoice
    whose final CLTV alone is 1009 cannot be paid by default; raising the cap lets the same invoice through."""
    hub, buyer2 = cluster.node("hub"), cluster.node("buyer2")
    preimage, payment_hash = _hash_pair()
    invoice = hub.rest.add_hold_invoice(payment_hash, 20_000, cltv_expiry=1009, memo="beyond ldk's cap")
    with pytest.raises(LdkError) as refused:
        buyer2.client.pay(invoice["payment_request"])
    assert refused.value.status == 409 and "send" in refused.value.message, refused.value
    assert buyer2.client.payment(payment_hash)["status"] == "failed"
    assert hub.rest.lookup_invoice(payment_hash)["state"] == "OPEN"
    # the cap is a per-payment route parameter: raised, the same invoice is paid and held
    started = buyer2.client.pay(invoice["payment_request"], max_total_cltv_expiry_delta=2016)
    wait_for(lambda: hub.rest.lookup_invoice(payment_hash)["state"] == "ACCEPTED", timeout=30,
             what="the hub's hold invoice ACCEPTED")
    hub.rest.settle_invoice(preimage)
    assert buyer2.client.wait_payment(started["payment_id"])["status"] == "succeeded"
    # LDK says succeeded once it has the preimage; the hub's channel balance moves only when the
    # HTLC is gone from the commitment. Left in flight, it landed in the next test's balances.
    wait_for(lambda: not any(h["payment_hash"] == payment_hash.hex()
                             for h in wallet(buyer2).in_flight() + wallet(hub).in_flight()),
             timeout=30, what="the settled HTLC gone from both ends")


def test_wallet_face_reads_an_ldk_payer_as_the_hub_sees_it(cluster) -> None:
    """The harness reads each party's node through one face (``regtest_cluster.nodes.wallet``):
    an LDK buyer's held HTLC (hash, amount, expiry) and its channel balance agree with the hub's LND."""
    hub, buyer2 = cluster.node("hub"), cluster.node("buyer2")
    ours, theirs = wallet(buyer2), wallet(hub)
    assert (ours.impl, ours.bindable, theirs.impl, theirs.bindable) == ("ldk", False, "lnd", True)
    before, hub_before = ours.channel_balance_sats(), theirs.channel_balance_sats()
    preimage, payment_hash = _hash_pair()
    invoice = hub.rest.add_hold_invoice(payment_hash, 25_000, cltv_expiry=144, memo="wallet face")
    outcome: dict = {}
    paying = threading.Thread(target=lambda: outcome.update(ours.pay(invoice["payment_request"])), daemon=True)
    paying.start()
    wait_for(lambda: hub.rest.lookup_invoice(payment_hash)["state"] == "ACCEPTED", timeout=30,
             what="the hub's hold invoice ACCEPTED")
    held = [h for h in ours.in_flight() if h["payment_hash"] == payment_hash.hex()]
    seen = [h for h in theirs.in_flight() if h["payment_hash"] == payment_hash.hex()]
    assert len(held) == 1 and not held[0]["incoming"] and held[0]["amount_sats"] == 25_000, held
    assert len(seen) == 1 and seen[0]["incoming"] and seen[0]["expiration_height"] == held[0]["expiration_height"]
    assert {p["payment_hash"]: p["status"] for p in ours.payments()}[payment_hash.hex()] == "IN_FLIGHT"
    hub.rest.settle_invoice(preimage)
    paying.join(60)
    assert outcome["status"] == "SUCCEEDED", outcome
    wait_for(lambda: not any(h["payment_hash"] == payment_hash.hex() for h in ours.in_flight() + theirs.in_flight()),
             timeout=30, what="the settled HTLC gone from both ends")
    wait_for(lambda: ours.channel_balance_sats() == before - 25_000, timeout=30,
             what=f"buyer2's channel balance {before} - 25000 (now {ours.channel_balance_sats()})")
    assert theirs.channel_balance_sats() == hub_before + 25_000
    assert {p["payment_hash"]: p["status"] for p in ours.payments()}[payment_hash.hex()] == "SUCCEEDED"


def _pays(cluster, src: str, dst: str, sats: int = 10_000) -> bool:
    try:
        return cluster.pay(src, dst, sats)["status"] == "SUCCEEDED"
    except (ClusterError, LdkError):
        return False


# What the hub logs while its peer is cut off (its connect refused), and buyer2 while it has no
# route; outcomes are asserted on node truth.
@pytest.mark.allow_log(r"\[ERR\] (PEER|SRVR|CMGR|HSWC|CRTR|DISC|RPCS):",
                       r"\[ERR\] (lightning::ln::outbound_payment|ldk_node::payment::bolt11):\d+: Failed to")
def test_partition_cuts_an_ldk_buyer_from_the_hub_both_ways_until_healed(cluster) -> None:
    """The relay cuts an ldkd off as it cuts an lnd: it tells ldkd's process by its --datadir."""
    hub, buyer2 = cluster.node("hub"), cluster.node("buyer2")
    assert _pays(cluster, "buyer2", "seller1")
    links = cluster.backend.relay_client().status()["links"]  # [dialer, listener]; "?": not known
    assert "?" not in {dialer for dialer, _ in links}, links
    assert {"buyer2", "seller2"} & {dialer for dialer, _ in links}, links  # an ldkd that dialled, named
    with Faults(cluster) as faults:
        faults.partition("buyer2", "hub")
        assert faults.partitions() == [("buyer2", "hub")]
        assert hub.pubkey not in wallet(buyer2).connected_peers()
        assert buyer2.pubkey not in wallet(hub).connected_peers()
        for x, y in ((buyer2, hub), (hub, buyer2)):  # neither side gets through, whoever dials
            try:
                wallet(x).connect(y.pubkey, y.p2p_host)
            except Exception as exc:  # noqa: BLE001 - each node words its refusal its own way
                assert "connect" in str(exc).lower() or "peer" in str(exc).lower(), exc
            assert y.pubkey not in wallet(x).connected_peers()
        assert not _pays(cluster, "buyer2", "seller1")
        assert _pays(cluster, "buyer1", "seller2")  # the rest of the network is untouched

        faults.heal("buyer2", "hub")
        assert faults.partitions() == []
        assert hub.pubkey in wallet(buyer2).connected_peers() and buyer2.pubkey in wallet(hub).active_channel_peers()
    assert _pays(cluster, "buyer2", "seller1")
