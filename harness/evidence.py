"""Node truth, gathered once per scenario for the oracle.

What the marketplace claims (orders, timelines, payouts) is read through its
driver as the admin sees it; what actually happened is read from the nodes: the hub's (LND's)
invoices and payments, and each party's own payments and channel balances through its
wallet face (``regtest_cluster.nodes.wallet``: LND or LDK alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.model import TERMINAL
from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.nodes.wallet import wallet
from regtest_cluster.waiting import WaitTimeout, wait_for


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
    # user id -> what their notification stream delivered (harness.driver.Streamed), for the watched
    streamed: dict[int, object] = field(default_factory=dict)
    # user id -> what arrived at their webhook (harness.webhooks, the same record), for the subscribed
    hooked: dict[int, object] = field(default_factory=dict)
    node_pubkeys: dict[str, str] = field(default_factory=dict)
    world: object = None          # for mode-specific checks that read their own node truth
    # Filled by the oracle's registry from each mode module: other money over the channels
    other_channel_flows: dict[str, int] = field(default_factory=dict)
    other_hub_payments: set[str] = field(default_factory=set)
    # node -> sats its funded channels' commitment fee rate updates gave back to its balance
    fee_rate_updates: dict[str, int] = field(default_factory=dict)


class Balances(dict):
    """Node -> channel balance (sats), with each node's funded channels' commitment fee rates
    and fees at the time (``fees``), so that a fee rate update between two readings is known."""

    fees: dict[str, dict[str, tuple[int, int]]]


def channel_balances(cluster: Cluster) -> Balances:
    out = Balances()
    out.fees = {}
    for name, node in cluster.nodes.items():
        face = wallet(node)
        out[name], out.fees[name] = face.channel_balance_sats(), face.funded_commit_fees()
    return out


def fee_rate_updates(before: dict, after: Balances) -> dict[str, int]:
    """Node -> the commitment fee it stopped (+) or started (-) paying on channels it funds whose
    fee rate changed between the two readings. A funder lowers its rate (update_fee) once
    bitcoind's estimator has data, tens of blocks after the channel opened at the 10 sat/vB
    fallback: its local balance then grows by the fee saved, though no payment moved it
    (CI saw +2,526 sats on the hub in the middle of a story)."""
    out: dict[str, int] = {}
    for name, fees in getattr(after, "fees", {}).items():
        old = getattr(before, "fees", {}).get(name, {})
        saved = sum(old[ch][1] - fee for ch, (rate, fee) in fees.items() if ch in old and old[ch][0] != rate)
        if saved:
            out[name] = saved
    return out


class HtlcsInFlight(WaitTimeout):
    """HTLCs stayed in flight past the wait; ``htlcs`` says which (node, channel, hash, amount, expiry)."""

    def __init__(self, message: str, htlcs: list[dict]) -> None:
        super().__init__(message)
        self.htlcs = htlcs


def in_flight(cluster: Cluster) -> list[dict]:
    """Every pending HTLC on every running node's channels, with its payment hash in hex."""
    return [h for node in cluster.nodes.values() if node.daemon.is_running() for h in wallet(node).in_flight()]


def describe_htlc(h: dict) -> str:
    where = f"order {h['order_id']}" if h.get("order_id") is not None else "no order of this run"
    return (f"{h['node']} {'in' if h['incoming'] else 'out'} {h['amount_sats']} sats, hash {h['payment_hash']}, "
            f"channel {h['channel_point']}, expires at height {h['expiration_height']} ({where})")


def wait_quiet(cluster: Cluster, held_hashes: set[str], timeout: float = 30,
               owners: dict[str, int] | None = None) -> None:
    """Wait until no HTLC is in flight anywhere but the holds that are meant to be held.

    A payment reports SUCCEEDED before every hop's commitment dance is over;
    balances read earlier would be half-way between two truths. On a timeout,
    ``HtlcsInFlight`` names the HTLCs still in flight, each with the order whose
    hold or payout it is (``owners``: payment hash -> order id).
    """
    last: list[dict] = []

    def quiet() -> bool:
        last[:] = [h for h in in_flight(cluster) if h["payment_hash"] not in held_hashes]
        return not last

    try:
        wait_for(quiet, timeout=timeout, what="in-flight HTLCs to settle")
    except WaitTimeout as exc:
        for h in last:
            h["order_id"] = (owners or {}).get(h["payment_hash"])
        shown = "; ".join(describe_htlc(h) for h in last[:10])
        if len(last) > 10:
            shown += f"; and {len(last) - 10} more"
        raise HtlcsInFlight(f"{str(exc).split('; last saw')[0]}; still in flight: {shown}", list(last)) from None


def quiesce(cluster: Cluster, timeout: float = 60) -> list[str]:
    """Make the cluster quiet before a story's balances are read: cancel the holds an earlier
    marketplace left accepted (nothing will settle them now, and LND would fail them back at
    their expiry, in the middle of this story, moving sats no rule of this story gives), then
    wait for every HTLC to end. Returns ``node:hash`` of each hold cancelled; raises
    ``HtlcsInFlight`` naming what stays in flight.

    The holds are found from the channels' own in-flight HTLCs: each incoming HTLC whose
    invoice on its node is ACCEPTED. (Listing a node's invoices is no way to find them: a hub
    that has served a whole test session holds thousands.)"""
    cancelled = []
    for h in in_flight(cluster):
        node = cluster.node(h["node"])
        if not h["incoming"] or wallet(node).impl != "lnd" or any(
                c.endswith(h["payment_hash"]) for c in cancelled):
            continue  # the marketplace's holds are LND hold invoices
        rest = node.rest
        payment_hash = bytes.fromhex(h["payment_hash"])
        try:
            if rest.lookup_invoice(payment_hash).get("state") == "ACCEPTED":
                rest.cancel_invoice(payment_hash)
                cancelled.append(f"{h['node']}:{h['payment_hash']}")
        except LndError:
            pass  # not this node's invoice (a forwarded HTLC), or settled or cancelled meanwhile
    wait_quiet(cluster, set(), timeout=timeout)
    return cancelled


def _hold_recorded(market, admin, order: dict, node_state: str, timeout: float = 10.0) -> dict:
    """The order as the app shows it once its hold's record agrees with the node (or after
    ``timeout``: I11 then judges what it shows). An ended order's hold can end on the node before
    the app records it: an expiry commits EXPIRED, then cancels the invoice, and the app records
    CANCELED when the invoice's subscription tells it. Judged in between, under load, I11 took
    that moment for a disagreement."""
    if order["state"] not in TERMINAL or order["hold"]["lnd_state"] == node_state:
        return order
    try:
        return wait_for(lambda: (o := market.order(admin, order["id"]))["hold"]["lnd_state"] == node_state and o,
                        timeout=timeout, what=f"order {order['id']}'s hold recorded {node_state}")
    except WaitTimeout:
        return market.order(admin, order["id"])


def gather(world, order_ids: list[int], parties: list, balances_before: dict[str, int],
           started_at: float = 0.0, webhooks=None) -> Evidence:
    """``webhooks``: the run's ``harness.webhooks.WebhookReceiver``, if the parties' webhooks were
    subscribed to it."""
    cluster, admin, market = world.cluster, world.admin, world.market
    hub = cluster.node("hub").rest
    held, owners = set(), {}
    for oid in order_ids:
        order = market.order(admin, oid)
        hold = order["hold"]
        owners.update({p["payment_hash"]: oid for p in order["payouts"] if p["payment_hash"]})
        if hold:
            owners[hold["payment_hash"]] = oid
            try:
                if hub.lookup_invoice(bytes.fromhex(hold["payment_hash"]))["state"] == "ACCEPTED":
                    held.add(hold["payment_hash"])
            except LndError:
                pass
    wait_quiet(cluster, held, owners=owners)
    after = channel_balances(cluster)
    ev = Evidence(balances_before=balances_before, balances_after=after,
                  fee_rate_updates=fee_rate_updates(balances_before, after),
                  node_pubkeys={n: node.pubkey for n, node in cluster.nodes.items()}, world=world)
    ev.all_hub_payments = hub.listpayments()
    payments_by_hash = {p["payment_hash"]: p for p in ev.all_hub_payments}
    ev.scenario_payments = [(p, hub.decodepayreq(p["payment_request"])) for p in ev.all_hub_payments
                            if p.get("payment_request") and int(p.get("creation_time_ns", 0)) / 1e9 >= started_at]
    buyer_payments: dict[str, dict] = {}
    for party in parties:
        if party.node is not None and "buyer" in party.roles:
            for p in wallet(party.node).payments():
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
            order = _hold_recorded(market, admin, order, invoice["state"] if invoice else "CANCELED")
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
        inbox = ev.notifications[party.id] = market.notifications(party)
        # after the inbox: the stream must have delivered everything the inbox shows
        streamed = market.streamed(party, max((n.get("id") or 0 for n in inbox), default=0))
        if streamed is not None:
            ev.streamed[party.id] = streamed
        if webhooks is not None and webhooks.watched(party.id):
            ev.hooked[party.id] = webhooks.received(party.id, inbox)
    return ev


__all__ = ["Evidence", "OrderEvidence", "HtlcsInFlight", "gather", "channel_balances", "in_flight", "quiesce"]
