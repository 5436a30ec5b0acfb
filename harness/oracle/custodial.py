"""Invariant checks for custodial escrow: the ledger's claims against node truth.

What the app claims comes from its admin API: ``GET /admin/ledger`` (every
balance, each custodial order's postings, deposits and withdrawals) and
``GET /admin/reconcile`` (its own comparison with the nodes). What happened
comes from the nodes, read here: bitcoind for deposits and batches, the hub's
LND for deposit invoices and withdrawal payments, every node's payments for
who paid a deposit invoice.

- I1: each custodial order's postings follow the rules (the price is held; a
  release pays price - fee and the fee; a refund returns the price; a split
  pays the buyer's share and the seller's part less its fee); each user's
  total equals node-confirmed deposits minus node-confirmed withdrawals plus
  the order rules; the app's reconciliation shows no mismatch; the custody
  wallet on bitcoind holds what the ledger says.
- I14: a Lightning withdrawal the hub reports IN_FLIGHT is still reserved
  (its status is not final and its user's inflight balance covers it), and
  the app reports a final status only once the hub has the same one. Checked
  at the end and on every snapshot a scenario took mid-flight
  (``snapshot_in_flight``, kept on the oracle context as ``custodial_snapshots``).
"""

from __future__ import annotations

from collections import defaultdict

from regtest_cluster.nodes.bitcoind import sats
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.waiting import WaitTimeout, wait_for
from harness.evidence import Evidence
from harness.oracle.base import PPM, Context, Violation

MODE = "custodial"
FINAL = ("SUCCEEDED", "FAILED")
OPEN_ONCHAIN = ("PENDING", "BATCHED", "BROADCAST")
# Where the custodial ledger holds the price for the order (from funding until the payout is final)
LOCKED_STATES = {"FUNDED", "SHIPPED", "DELIVERED", "DISPUTED", "HELD_IN_CUSTODY", "RELEASE_PENDING",
                 "REFUND_PENDING", "SPLIT_PENDING"}


def _custodial(ev: Evidence) -> dict[int, dict]:
    return {oid: oe.order for oid, oe in ev.orders.items() if oe.order["escrow_mode"] == "custodial"}


def _claims(ev: Evidence) -> dict | None:
    """The app's ledger, or None when this app has no custodial mode (nothing to check)."""
    if ev.world is None or ev.world.admin is None:
        return None
    claims = ev.world.market.ledger(ev.world.admin)
    if claims is None:
        return None
    untouched = not (claims["accounts"] or claims["orders"] or claims["deposit_addresses"])
    return None if untouched else claims


def _sats_up(msat: int) -> int:
    return -(-msat // 1000)


# --- I1: per order, per user, globally

def order_rules(o: dict, fee_ppm: int) -> tuple[list | None, dict[str, int] | None]:
    """The hold and outcome postings the rules give an order, as {account: amount}."""
    price, buyer, seller = o["price_sats"], o["buyer_id"], o["seller_id"]
    funded = o["state"] in LOCKED_STATES or o["state"] in ("RELEASED", "REFUNDED", "SPLIT")
    hold = {f"user:{buyer}:available": -price, f"user:{buyer}:held": price} if funded else None
    if o["state"] == "RELEASED":
        fee = price * fee_ppm // PPM
        outcome = {f"user:{buyer}:held": -price, f"user:{seller}:available": price - fee, "sys:fees": fee}
    elif o["state"] == "REFUNDED":
        outcome = {f"user:{buyer}:held": -price, f"user:{buyer}:available": price}
    elif o["state"] == "SPLIT":
        buyer_part = price * (o["buyer_share_ppm"] or 0) // PPM
        gross = price - buyer_part
        fee = gross * fee_ppm // PPM
        outcome = {f"user:{buyer}:held": -price, f"user:{buyer}:available": buyer_part,
                   f"user:{seller}:available": gross - fee, "sys:fees": fee}
    else:
        outcome = None
    clean = (lambda d: None if d is None else {k: v for k, v in d.items() if v})
    return clean(hold), clean(outcome)


def _order_violations(orders: dict[int, dict], claims: dict, fee_ppm: int) -> list[Violation]:
    out = []
    for oid, o in orders.items():
        posted = claims["orders"].get(str(oid), {"hold": None, "outcome": None})
        want_hold, want_outcome = order_rules(o, fee_ppm)
        for what, want, got in (("hold", want_hold, posted["hold"]), ("outcome", want_outcome, posted["outcome"])):
            got = None if got is None else {name: amount for name, amount in got}
            if want != got:
                out.append(Violation("I1", oid, f"{o['state']}: the rules give the {what} {want}, "
                                                f"the ledger posted {got}", {"order": oid, what: got}))
    return out


def _user_violations(ev: Evidence, orders: dict[int, dict], claims: dict, fee_ppm: int) -> list[Violation]:
    """Each user's ledger total against node-confirmed money in and out plus the order rules."""
    bitcoind = ev.world.cluster.bitcoind.rpc
    hub = ev.world.cluster.node("hub").rest
    k = claims["confirmations"]
    want: dict[int, int] = defaultdict(int)
    out = []
    for d in claims["onchain_deposits"]:
        if d["status"] != "CREDITED":
            continue
        tx = bitcoind.getrawtransaction(d["txid"], True)
        vout = tx["vout"][d["vout"]]
        if (sats(vout["value"]), vout["scriptPubKey"].get("address")) != (d["amount_sats"], d["address"]) \
                or int(tx.get("confirmations", 0)) < k:
            out.append(Violation("I1", None, f"deposit {d['txid']}:{d['vout']} credited {d['amount_sats']} sats, "
                                             f"the chain shows {sats(vout['value'])} with "
                                             f"{tx.get('confirmations', 0)} confirmations", d))
        want[d["user_id"]] += d["amount_sats"]
    for i in claims["ln_deposits"]:
        if i["state"] == "CREDITED":
            try:
                invoice = hub.lookup_invoice(bytes.fromhex(i["payment_hash"]))
            except LndError:
                invoice = {"state": "GONE"}
            paid = int(invoice.get("amt_paid_msat", 0) or 0) // 1000 if invoice["state"] == "SETTLED" else 0
            if paid != i["credited_sats"]:
                out.append(Violation("I1", None, f"LN deposit {i['payment_hash'][:16]}… credited "
                                                 f"{i['credited_sats']}, the hub settled {paid}", i))
            want[i["user_id"]] += paid
        elif i["state"] == "PAID_INTERNAL":
            want[i["user_id"]] += i["credited_sats"]
    payments = {p["payment_hash"]: p for p in hub.listpayments()}
    for w in claims["ln_withdrawals"]:
        if w["status"] != "SUCCEEDED":
            continue
        if w["internal"]:
            want[w["user_id"]] -= w["amount_sats"]
            continue
        p = payments.get(w["payment_hash"], {})
        if p.get("status") != "SUCCEEDED":
            out.append(Violation("I1", None, f"withdrawal {w['payment_hash'][:16]}… is SUCCEEDED in the ledger, "
                                             f"{p.get('status', 'absent')} on the hub", w))
            continue
        node_fee = _sats_up(int(p.get("fee_msat", 0) or 0))
        want[w["user_id"]] -= int(p["value_msat"]) // 1000 + min(node_fee, w["fee_limit_sats"])
    for r in claims["onchain_withdrawals"]:
        if r["status"] != "CONFIRMED":
            continue  # a reservation moves money between a user's own balances; a failure returns it
        want[r["user_id"]] -= r["amount_sats"]
        if int(bitcoind.getrawtransaction(r["txid"], True).get("confirmations", 0)) < k:
            out.append(Violation("I1", None, f"on-chain withdrawal {r['id']} is CONFIRMED, its batch {r['txid']} "
                                             f"has fewer than {k} confirmations", r))
    for o in orders.values():
        hold, outcome = order_rules(o, fee_ppm)
        for legs in (hold or {}, outcome or {}):
            for name, amount in legs.items():
                if name.startswith("user:"):
                    want[int(name.split(":")[1])] += amount
    got: dict[int, int] = defaultdict(int)
    for name, balance in claims["accounts"].items():
        if name.startswith("user:"):
            got[int(name.split(":")[1])] += balance
    for user in sorted(set(want) | set(got)):
        if want[user] != got[user]:
            out.append(Violation("I1", None, f"user {user}: deposits, withdrawals and orders give {want[user]} sats, "
                                             f"the ledger holds {got[user]}",
                                 {"user": user, "expected": want[user], "actual": got[user]}))
    return out


def _wallet_violations(ev: Evidence, claims: dict) -> list[Violation]:
    """The custody wallet on bitcoind against the ledger's hot wallet, read here, not by the app."""
    wallet = ev.world.cluster.bitcoind.wallet(claims["wallet"])
    try:
        trusted = sats(wallet.getbalances()["mine"]["trusted"])
        credited = {(d["txid"], d["vout"]) for d in claims["onchain_deposits"] if d["status"] == "CREDITED"}
        ours = set(claims["deposit_addresses"])
        uncredited = sum(sats(u["amount"]) for u in wallet.listunspent(0)
                         if u.get("address") in ours and (u["txid"], int(u["vout"])) not in credited
                         and (int(u.get("confirmations", 0)) > 0 or u.get("safe")))
    except Exception as exc:  # noqa: BLE001 - no wallet yet: only a ledger that never gave an address may lack it
        if not claims["deposit_addresses"]:
            return []
        return [Violation("I1", None, f"the custody wallet {claims['wallet']} cannot be read: {exc}")]
    claimed = -claims["accounts"].get("sys:hot_wallet", 0)
    if trusted - uncredited != claimed:
        return [Violation("I1", None, f"the custody wallet holds {trusted - uncredited} sats of credited money, "
                                      f"the ledger says {claimed}",
                          {"trusted": trusted, "uncredited": uncredited, "ledger": claimed})]
    return []


def _reconcile_violations(ev: Evidence) -> list[Violation]:
    """The app's reconciliation, retried briefly: a worker pass may be between wallet and ledger."""
    last: dict = {}

    def clean():
        nonlocal last
        last = ev.world.market.reconcile(ev.world.admin)
        return last["ok"]

    try:
        wait_for(clean, timeout=15, what="a clean reconciliation")
        return []
    except WaitTimeout:
        return [Violation("I1", None, f"reconciliation: {m['account']} expected {m['expected']}, "
                                      f"actual {m['actual']} ({m['detail']})", m) for m in last["mismatches"]]


def i1_custodial(ev: Evidence, cx: Context) -> list[Violation]:
    claims = _claims(ev)
    if claims is None:
        return []
    orders = _custodial(ev)
    for oid in claims["orders"]:  # orders the scenario did not track still move balances
        if int(oid) not in orders:
            orders[int(oid)] = ev.world.market.order(ev.world.admin, int(oid))
    fee_ppm = cx.settings["fee_ppm"]
    return (_order_violations(orders, claims, fee_ppm) + _user_violations(ev, orders, claims, fee_ppm)
            + _wallet_violations(ev, claims) + _reconcile_violations(ev))


# --- I14: in-flight debits stay reserved

def snapshot_in_flight(world) -> dict:
    """The app's withdrawals and balances next to the hub's payment status, at one moment."""
    claims = world.market.ledger(world.admin)
    hub = world.cluster.node("hub").rest
    node = {}
    for w in claims["ln_withdrawals"]:
        if not w["internal"]:
            try:
                node[w["payment_hash"]] = hub.track_payment(bytes.fromhex(w["payment_hash"])).get("status", "UNKNOWN")
            except LndError:
                node[w["payment_hash"]] = "NOT_INITIATED"
    return {"claims": claims, "node": node}


def _in_flight_violations(snapshot: dict, when: str) -> list[Violation]:
    claims, node = snapshot["claims"], snapshot["node"]
    out = []
    reserved: dict[int, int] = defaultdict(int)
    for w in claims["ln_withdrawals"]:
        if w["status"] not in FINAL:
            reserved[w["user_id"]] += w["amount_sats"] + w["fee_limit_sats"]
        if w["internal"]:
            continue
        status = node.get(w["payment_hash"], "NOT_INITIATED")
        if status == "IN_FLIGHT" and w["status"] in FINAL:
            out.append(Violation("I14", None, f"{when}: withdrawal {w['payment_hash'][:16]}… is {w['status']} in the "
                                              "app while the hub still has it IN_FLIGHT", {**w, "node": status}))
        elif w["status"] in FINAL and status != w["status"]:
            out.append(Violation("I14", None, f"{when}: withdrawal {w['payment_hash'][:16]}… is {w['status']} in the "
                                              f"app, {status} on the hub", {**w, "node": status}))
    for r in claims["onchain_withdrawals"]:
        if r["status"] in OPEN_ONCHAIN:
            reserved[r["user_id"]] += r["amount_sats"]
    inflight = {int(name.split(":")[1]): b for name, b in claims["accounts"].items()
                if name.startswith("user:") and name.endswith(":inflight")}
    for user in sorted(set(reserved) | set(inflight)):
        if inflight.get(user, 0) != reserved[user]:
            out.append(Violation("I14", None, f"{when}: user {user} has {inflight.get(user, 0)} sats in flight, "
                                              f"the unfinished withdrawals reserve {reserved[user]}",
                                 {"user": user, "expected": reserved[user], "actual": inflight.get(user, 0)}))
    return out


def i14_in_flight_reserved(ev: Evidence, cx: Context) -> list[Violation]:
    if _claims(ev) is None:
        return []
    out = []
    for i, snapshot in enumerate(getattr(cx, "custodial_snapshots", [])):
        out += _in_flight_violations(snapshot, f"snapshot {i + 1}")
    return out + _in_flight_violations(snapshot_in_flight(ev.world), "at the end")


# --- Lightning flows of custodial accounts, for the channel-balance conservation check

def ln_flows(ev: Evidence) -> dict[str, int]:
    """How custodial deposits and withdrawals moved each node's channel balance (sats), from the
    nodes' own payment records: who paid each settled deposit invoice, where each withdrawal went.
    The Lightning conservation check (ln_hold.i1_conservation) adds these to what escrows explain."""
    claims = _claims(ev)
    deltas: dict[str, int] = defaultdict(int)
    if claims is None:
        return deltas
    cluster = ev.world.cluster
    by_pubkey = {node.pubkey: name for name, node in cluster.nodes.items()}
    wanted = {i["payment_hash"] for i in claims["ln_deposits"] if i["state"] == "CREDITED"}
    wanted |= {w["payment_hash"] for w in claims["ln_withdrawals"] if not w["internal"]}
    msat: dict[str, int] = defaultdict(int)
    for name, node in cluster.nodes.items():
        if not node.daemon.is_running():
            continue
        for p in node.rest.listpayments():
            if p["payment_hash"] not in wanted or p.get("status") != "SUCCEEDED":
                continue
            for htlc in p.get("htlcs", []):
                if htlc.get("status") != "SUCCEEDED":
                    continue
                route = htlc["route"]
                msat[name] -= int(route["total_amt_msat"])
                hops = route["hops"]
                for j, hop in enumerate(hops):
                    gets = int(hop["amt_to_forward_msat"]) if j == len(hops) - 1 else int(hop.get("fee_msat", 0))
                    msat[by_pubkey.get(hop["pub_key"], hop["pub_key"])] += gets
    for name, amount in msat.items():
        deltas[name] = int(amount / 1000)
    return deltas


def withdrawal_hashes(ev: Evidence) -> set[str]:
    """Payment hashes of the app's custodial Lightning withdrawals: hub payments that are not
    escrow payouts but are accounted for (the at-most-once check, ln_hold.i3_at_most_once, knows them
    by these; whether each was debited once is I1 here)."""
    claims = _claims(ev)
    return set() if claims is None else {w["payment_hash"] for w in claims["ln_withdrawals"] if not w["internal"]}


def contributions(ev: Evidence) -> tuple[dict[str, int], set[str]]:
    """For the registry: custodial money moving over the channels, and the hub payments it explains."""
    return ln_flows(ev), withdrawal_hashes(ev)


CHECKS = {
    "I1": ("Conservation (custodial ledger)", i1_custodial),
    "I14": ("Custodial in-flight debits stay reserved", i14_in_flight_reserved),
}
