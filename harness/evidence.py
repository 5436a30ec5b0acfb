"""Node truth, gathered once per scenario for the oracle.

What the marketplace claims (orders, timelines, payouts) is read through its
driver as the admin sees it; what actually happened is read from LND: the hub's
invoices and payments, each party's own payments and channel balances.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.waiting import wait_for


@dataclass
class OrderEvidence:
    order: dict                       # the app's view (admin)
    events: list[dict]                # the app's timeline
    invoice: dict | None              # the hub's LookupInvoiceV2, or None if gone
    payment_request: dict | None      # the hold invoice decoded by the hub
    hub_payments: list[dict]          # the hub's payments recorded for this order's payouts
    payout_invoices: dict[str, dict]  # payment hash -> decoded payout invoice
    buyer_payment: dict | None        # the buyer's own node's record of paying the hold


@dataclass
class Evidence:
    orders: dict[int, OrderEvidence] = field(default_factory=dict)
    balances_before: dict[str, int] = field(default_factory=dict)
    balances_after: dict[str, int] = field(default_factory=dict)
    all_hub_payments: list[dict] = field(default_factory=list)
    # every payment the hub made since the scenario began, with its invoice decoded
    scenario_payments: list[tuple[dict, dict]] = field(default_factory=list)
    notifications: dict[int, list[dict]] = field(default_factory=dict)   # user id -> their notifications
    node_pubkeys: dict[str, str] = field(default_factory=dict)
    world: object = None          # for mode-specific checks that read their own node truth
    # Filled by the oracle's registry from each mode module: other money over the channels
    other_channel_flows: dict[str, int] = field(default_factory=dict)
    other_hub_payments: set[str] = field(default_factory=set)


def channel_balances(cluster: Cluster) -> dict[str, int]:
    return {name: int(node.rest.channelbalance()["local_balance"]["sat"]) for name, node in cluster.nodes.items()}


def wait_quiet(cluster: Cluster, held_hashes: set[str], timeout: float = 30) -> None:
    """Wait until no HTLC is in flight anywhere but the holds that are meant to be held.

    A payment reports SUCCEEDED before every hop's commitment dance is over;
    balances read earlier would be half-way between two truths.
    """
    held = {base64.b64encode(bytes.fromhex(h)).decode() for h in held_hashes}

    def quiet() -> bool:
        return all(h["hash_lock"] in held
                   for node in cluster.nodes.values() if node.daemon.is_running()
                   for ch in node.rest.listchannels() for h in ch.get("pending_htlcs", []))

    wait_for(quiet, timeout=timeout, what="in-flight HTLCs to settle")


def gather(world, order_ids: list[int], parties: list, balances_before: dict[str, int],
           started_at: float = 0.0) -> Evidence:
    cluster, admin, market = world.cluster, world.admin, world.market
    hub = cluster.node("hub").rest
    held = set()
    for oid in order_ids:
        hold = market.order(admin, oid)["hold"]
        if hold:
            try:
                if hub.lookup_invoice(bytes.fromhex(hold["payment_hash"]))["state"] == "ACCEPTED":
                    held.add(hold["payment_hash"])
            except LndError:
                pass
    wait_quiet(cluster, held)
    ev = Evidence(balances_before=balances_before, balances_after=channel_balances(cluster),
                  node_pubkeys={n: node.pubkey for n, node in cluster.nodes.items()}, world=world)
    ev.all_hub_payments = hub.listpayments()
    payments_by_hash = {p["payment_hash"]: p for p in ev.all_hub_payments}
    ev.scenario_payments = [(p, hub.decodepayreq(p["payment_request"])) for p in ev.all_hub_payments
                            if p.get("payment_request") and int(p.get("creation_time_ns", 0)) / 1e9 >= started_at]
    buyer_payments: dict[str, dict] = {}
    for party in parties:
        if party.node is not None and "buyer" in party.roles:
            for p in party.node.rest.listpayments():
                buyer_payments[p["payment_hash"]] = p
    for oid in order_ids:
        order = market.order(admin, oid)
        events = market.timeline(admin, oid)
        invoice = decoded = None
        if order["hold"]:
            try:
                invoice = hub.lookup_invoice(bytes.fromhex(order["hold"]["payment_hash"]))
            except LndError:
                invoice = None  # gone: lnd treats it as cancelled
            decoded = hub.decodepayreq(order["hold"]["payment_request"])
        hashes = {p["payment_hash"] for p in order["payouts"] if p["payment_hash"]}
        payout_invoices = {}
        for h in hashes:
            if h in payments_by_hash and payments_by_hash[h].get("payment_request"):
                payout_invoices[h] = hub.decodepayreq(payments_by_hash[h]["payment_request"])
        ev.orders[oid] = OrderEvidence(
            order=order, events=events, invoice=invoice, payment_request=decoded,
            hub_payments=[payments_by_hash[h] for h in hashes if h in payments_by_hash],
            payout_invoices=payout_invoices,
            buyer_payment=buyer_payments.get(order["hold"]["payment_hash"]) if order["hold"] else None)
    for party in parties:
        ev.notifications[party.id] = market.notifications(party)
    return ev


__all__ = ["Evidence", "OrderEvidence", "gather", "channel_balances"]
