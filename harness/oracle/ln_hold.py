"""The Lightning hold-invoice checks: I1–I18 on the hub's invoices and payments and on
every node's channel balances.

A check returns violations; each names the order, what was expected, what
the nodes say, and the evidence (invoice state, payment hash, balances).
Other modes' money that moves over the same channels (custodial deposits and
withdrawals) reaches these checks as ``ev.other_channel_flows`` and
``ev.other_hub_payments``, which the registry fills from each mode module.
"""

from __future__ import annotations

import math
import re

from harness.evidence import Evidence
from harness.oracle.base import (AUTOMATIC, CANCELLING_CLAIMS, PPM, RELEASE_GROUNDS, SETTLING_CLAIMS, TERMINAL,
                                 Context, Violation, _at, _first, expected_deltas)

MODE = "ln_hold"


def i1_conservation(ev: Evidence, cx: Context) -> list[Violation]:
    want: dict[str, int] = {n: 0 for n in ev.balances_before}
    for node, delta in ev.other_channel_flows.items():  # e.g. custodial deposits and withdrawals
        want[node] = want.get(node, 0) + delta
    for node, saved in ev.fee_rate_updates.items():  # a funder's update_fee: its own fee, no payment
        want[node] = want.get(node, 0) + saved
    for oe in ev.orders.values():
        o = oe.order
        if o["escrow_mode"] != "ln_hold":
            continue  # channel balances only move for Lightning escrows; each mode checks its own
        b, s, h = expected_deltas(o, cx.settings["fee_ppm"])
        want[cx.user_nodes[o["buyer_id"]]] += b
        want[cx.user_nodes[o["seller_id"]]] += s
        want["hub"] += h
    got = {n: ev.balances_after[n] - ev.balances_before[n] for n in want}
    out = [Violation("I1", None, f"{n}: the rules give {want[n]:+} sats, its node shows {got[n]:+}",
                     {"node": n, "expected": want[n], "actual": got[n]}) for n in want if want[n] != got[n]]
    created = sum(got.values()) - sum(ev.fee_rate_updates.values())  # a fee update returns the funder's own fee
    if created != 0:
        out.append(Violation("I1", None, f"sats created or lost across the network: {created:+}", got))
    return out


def i2_one_outcome(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        o, events, inv = oe.order, oe.events, oe.invoice
        finals = [e for e in events if e["to_state"] in TERMINAL]
        acceptable = cx.expected_final.get(oid, TERMINAL)
        if o["state"] not in acceptable:
            out.append(Violation("I2", oid, f"ended {o['state']}, expected one of {sorted(acceptable)}"))
        if len(finals) > 1 or (finals and events[-1] is not finals[0]):
            out.append(Violation("I2", oid, "events after a terminal state", {"events": [e["event"] for e in events]}))
        if o["escrow_mode"] != "ln_hold":
            continue  # the hold-invoice checks below are Lightning's; each mode checks its own lock
        state = inv["state"] if inv else "CANCELED"
        if o["state"] in ("RELEASED", "SPLIT") and state != "SETTLED":
            out.append(Violation("I2", oid, f"{o['state']} but the hold invoice is {state}"))
        if o["state"] == "REFUNDED" and state == "SETTLED" and not any(
                p["beneficiary"] == "buyer" and p["status"] == "SUCCEEDED" for p in o["payouts"]):
            out.append(Violation("I2", oid, "REFUNDED but the hold was settled and the buyer never repaid"))
        if o["state"] == "EXPIRED" and state in ("ACCEPTED", "SETTLED"):
            out.append(Violation("I2", oid, f"EXPIRED but the hold is {state}"))
    return out


def i3_at_most_once(ev: Evidence, cx: Context) -> list[Violation]:
    """Per order, no more successful hub payments than planned payouts; none unexplained."""
    out = []
    known = {p["payment_hash"] for oe in ev.orders.values() for p in oe.order["payouts"] if p["payment_hash"]}

    known |= ev.other_hub_payments  # e.g. custodial withdrawals, paid by the hub too
    per_order: dict[int, int] = {}
    for pay, decoded in ev.scenario_payments:
        if pay["status"] != "SUCCEEDED":
            continue
        m = re.search(r"payout order (\d+)", decoded.get("description", ""))
        if m:
            per_order[int(m[1])] = per_order.get(int(m[1]), 0) + 1
        if pay["payment_hash"] not in known:
            out.append(Violation("I3", int(m[1]) if m else None,
                                 f"the hub paid {pay['value_sat']} sats that no payout accounts for",
                                 {"payment_hash": pay["payment_hash"]}))
    for oid, n in per_order.items():
        planned = len(ev.orders[oid].order["payouts"]) if oid in ev.orders else 0
        if n > planned:
            out.append(Violation("I3", oid, f"{n} successful payouts where {planned} were due"))
    return out


def i4_release_grounds(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        o, events = oe.order, oe.events
        if oid in cx.forged_evidence and _first(events, event="delivered"):
            out.append(Violation("I4", oid, "a forged courier event was taken as delivery evidence"))
        claim = _first(events, to_state="RELEASE_PENDING") or _first(events, to_state="SPLIT_PENDING")
        if claim is None:
            continue
        if claim["event"] not in RELEASE_GROUNDS:
            out.append(Violation("I4", oid, f"released on '{claim['event']}', which is no delivery evidence, "
                                            "buyer confirmation or ruling"))
        if claim["event"] == "buyer_confirm" and claim["actor"] != f"user:{o['buyer_id']}":
            out.append(Violation("I4", oid, f"'buyer_confirm' made by {claim['actor']}"))
        if claim["event"].startswith("rule_") and claim["actor"] in (f"user:{o['buyer_id']}", f"user:{o['seller_id']}"):
            out.append(Violation("I4", oid, "a party ruled on its own dispute"))
        if claim["event"] == "dispute_window_end" and not _first(events, event="delivered"):
            out.append(Violation("I4", oid, "released at the end of a dispute window without a delivery"))
    return out


def i5_claim_before_effect(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        inv, events = oe.invoice, oe.events
        if not inv:
            continue
        resolved = [int(h["resolve_time"]) for h in inv.get("htlcs", []) if int(h.get("resolve_time", 0) or 0)]
        if inv["state"] == "SETTLED":
            claim = next((e for e in events if e["to_state"] in SETTLING_CLAIMS
                          or (e["to_state"] == "REFUND_PENDING" and e["from_state"] == "HELD_IN_CUSTODY")), None)
            if claim is None:
                out.append(Violation("I5", oid, "the hold was settled but the order never claimed a settling state",
                                     {"events": [e["event"] for e in events]}))
            elif resolved and min(resolved) + 1 < _at(claim):
                out.append(Violation("I5", oid, "settled on the node before the claim committed",
                                     {"resolve_time": min(resolved), "claim_at": claim["at"]}))
    return out


def i6_races(ev: Evidence, cx: Context) -> list[Violation]:
    return [Violation("I6", None, f"concurrent requests gave {codes}: more than one succeeded")
            for codes in cx.race_results if sum(1 for c in codes if c < 300) > 1]


def i7_resolved_before_expiry(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        if _first(oe.events, event="lock_lost") and not cx.operator_gone:
            out.append(Violation("I7", oid, "the node cancelled the hold at its expiry before the app resolved it",
                                 {"htlc_expiry": oe.order["hold"]["htlc_expiry_height"]}))
        inv = oe.invoice
        if inv and inv["state"] == "CANCELED" and _first(oe.events, event="funded") and not any(
                e["to_state"] in CANCELLING_CLAIMS for e in oe.events) and not cx.operator_gone:
            out.append(Violation("I7", oid, "a funded hold was cancelled without the app deciding to refund"))
    return out


def i8_lock_outlives_timers(ev: Evidence, cx: Context) -> list[Violation]:
    s = cx.settings
    need = math.ceil((s["ship_window_blocks"] + s["delivery_window_blocks"] + s["dispute_window_blocks"])
                     * s["speedup_factor"]) + s["guardian_margin_blocks"] + s["hold_expiry_delta_blocks"]
    return [Violation("I8", oid, f"hold CLTV {oe.payment_request['cltv_expiry']} < {need} the windows need")
            for oid, oe in ev.orders.items() if oe.payment_request and int(oe.payment_request["cltv_expiry"]) < need]


def i9_funding_first(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        names = [e["event"] for e in oe.events]
        funded_at = names.index("funded") if "funded" in names else None
        for i, name in enumerate(names):
            if name in ("ship", "open_dispute") and (funded_at is None or i < funded_at):
                out.append(Violation("I9", oid, f"'{name}' before funding evidence"))
        if funded_at is not None and oe.invoice:
            funded = oe.events[funded_at]
            accepted = [int(h["accept_time"]) for h in oe.invoice.get("htlcs", []) if int(h.get("accept_time", 0) or 0)]
            paid = int(oe.invoice.get("amt_paid_sat", 0) or 0)
            if not accepted or min(accepted) > _at(funded) + 1:
                out.append(Violation("I9", oid, "FUNDED before LND accepted an HTLC", {"funded_at": funded["at"]}))
            elif oe.invoice["state"] in ("ACCEPTED", "SETTLED") and paid < oe.order["price_sats"]:
                out.append(Violation("I9", oid, f"FUNDED with {paid} of {oe.order['price_sats']} sats held"))
    return out


def i10_payout_invoice(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        o = oe.order
        for p in o["payouts"]:
            pay = next((x for x in oe.hub_payments if x["payment_hash"] == p["payment_hash"]), None)
            if not pay or pay["status"] != "SUCCEEDED":
                continue
            decoded = oe.payout_invoices.get(p["payment_hash"], {})
            user = o["seller_id"] if p["beneficiary"] == "seller" else o["buyer_id"]
            if int(pay["value_sat"]) != p["amount_sats"]:
                out.append(Violation("I10", oid, f"paid {pay['value_sat']} sats for a {p['amount_sats']} payout"))
            if decoded and decoded.get("destination") != ev.node_pubkeys.get(cx.user_nodes.get(user, ""), None):
                out.append(Violation("I10", oid, "paid an invoice that is not the beneficiary's node"))
            if int(pay.get("fee_sat", 0)) > cx.settings["payout_fee_limit_sats"]:
                out.append(Violation("I10", oid, f"routing fee {pay['fee_sat']} over the limit"))
            out += _payout_invoice_terms(oid, decoded, pay, cx.settings)
    return out


EXPIRY_SLACK_S = 5  # between the marketplace's check and the node recording the payment


def _payout_invoice_terms(oid: int, decoded: dict, pay: dict, rules: dict) -> list[Violation]:
    """The paid invoice's expiry (time left when the hub started paying it) and final CLTV against
    the rules the marketplace reports; a rule it does not report is not judged."""
    out = []
    if not decoded:
        return out
    min_expiry, max_cltv = rules.get("payout_min_expiry_s"), rules.get("payout_max_final_cltv")
    created = int(pay.get("creation_time_ns", 0) or 0) / 1e9 or float(pay.get("creation_date", 0) or 0)
    if min_expiry is not None and created:
        left = int(decoded["timestamp"]) + int(decoded["expiry"]) - created
        if left + EXPIRY_SLACK_S < int(min_expiry):
            out.append(Violation("I10", oid, f"paid an invoice with {int(left)}s left before it expired; "
                                             f"the rules ask at least {min_expiry}s",
                                 {"payment_hash": pay["payment_hash"], "expiry": decoded["expiry"]}))
    if max_cltv is not None and int(decoded.get("cltv_expiry", 0) or 0) > int(max_cltv):
        out.append(Violation("I10", oid, f"paid an invoice whose final CLTV {decoded['cltv_expiry']} exceeds "
                                         f"{max_cltv}", {"payment_hash": pay["payment_hash"]}))
    return out


def i11_db_matches_nodes(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        hold, inv = oe.order["hold"], oe.invoice
        node_state = inv["state"] if inv else "CANCELED"
        if hold and hold["lnd_state"] != node_state and oe.order["state"] in TERMINAL:
            out.append(Violation("I11", oid, f"the app says the hold is {hold['lnd_state']}, LND says {node_state}"))
        for p in oe.order["payouts"]:
            pay = next((x for x in oe.hub_payments if x["payment_hash"] == p["payment_hash"]), None)
            if (p["status"] == "SUCCEEDED") != bool(pay and pay["status"] == "SUCCEEDED"):
                out.append(Violation("I11", oid, f"payout {p['status']} in the app, "
                                                 f"{pay['status'] if pay else 'absent'} on the node"))
    return out


def i12_dispute_freezes(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    for oid, oe in ev.orders.items():
        frozen = False
        for e in oe.events:
            if frozen and e["event"] in AUTOMATIC:
                out.append(Violation("I12", oid, f"'{e['event']}' ran after a dispute froze the order"))
            if e["to_state"] == "DISPUTED" or e["event"] == "open_dispute":
                frozen = True
        shipped = _first(oe.events, event="ship")
        refund = _first(oe.events, to_state="REFUND_PENDING")
        if shipped and refund and not refund["event"].startswith(("rule_", "ruling_timeout")):
            out.append(Violation("I12", oid, f"refunded after shipment by '{refund['event']}', without a ruling"))
    return out


def i13_fees_apart(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    fee_ppm = cx.settings["fee_ppm"]
    for oid, oe in ev.orders.items():
        o = oe.order
        for p in o["payouts"]:
            if p["beneficiary"] == "seller" and o["state"] == "RELEASED":
                want = o["price_sats"] - o["price_sats"] * fee_ppm // PPM
                if p["amount_sats"] != want:
                    out.append(Violation("I13", oid, f"seller payout {p['amount_sats']} != price - fee = {want}"))
            if p["beneficiary"] == "buyer" and o["state"] == "REFUNDED" and p["amount_sats"] != o["price_sats"]:
                out.append(Violation("I13", oid, f"buyer refund {p['amount_sats']} != price {o['price_sats']}"))
    return out


def i15_liveness(ev: Evidence, cx: Context) -> list[Violation]:
    return [Violation("I15", oid, f"still {oe.order['state']} when the scenario's time ran out")
            for oid, oe in ev.orders.items()
            if oe.order["state"] not in TERMINAL and oe.order["state"] not in cx.expected_final.get(oid, set())]


def i16_operator_gone(ev: Evidence, cx: Context) -> list[Violation]:
    if not cx.operator_gone:
        return []
    return [Violation("I16", oid, f"the buyer's payment is {oe.buyer_payment['status'] if oe.buyer_payment else 'unknown'}"
                                  " after the operator left; it must have failed back")
            for oid, oe in ev.orders.items() if oe.order["escrow_mode"] == "ln_hold"
            and (oe.invoice is None or oe.invoice["state"] != "SETTLED")
            and not (oe.buyer_payment and oe.buyer_payment["status"] == "FAILED")]


def i18_both_told(ev: Evidence, cx: Context) -> list[Violation]:
    # What each user was told, as a set: scanning a user's whole inbox for every event of every
    # order was quadratic, and a 30-minute soak's 12,394 orders (a seller told ~37,000 times)
    # kept the oracle busy for many minutes.
    told = {uid: {(n["kind"], n.get("order_id")) for n in inbox} for uid, inbox in ev.notifications.items()}
    out = []
    for oid, oe in ev.orders.items():
        o = oe.order
        for e in oe.events:
            if e["to_state"] == e["from_state"]:
                continue
            kind = f"order.{e['to_state'].lower()}"
            for role, uid in (("buyer", o["buyer_id"]), ("seller", o["seller_id"])):
                if uid in told and (kind, oid) not in told[uid]:
                    out.append(Violation("I18", oid, f"the {role} was not told of {e['to_state']}"))
    return out + _pushes_missed(ev)


# each push channel: its name, its Evidence field, and what a gap before its newest means
PUSHES = (("notification stream", "streamed", "it skipped it"), ("webhook", "hooked", "it gave it up or never sent it"))


def _pushes_missed(ev: Evidence) -> list[Violation]:
    """Told in the inbox is not told: a party whose notification stream was watched, or whose
    webhook was subscribed, must have been sent every notification its inbox shows from then on,
    as the inbox shows it. A stream that moves past a row committed late (ids taken in one order,
    committed in another), or that does not resume after ``Last-Event-ID``, loses it for good
    though the inbox has it; so does a webhook that gives up on an endpoint that was down, or
    signs what no receiver can verify."""
    out = []
    for channel, attr, gap in PUSHES:
        for uid, pushed in getattr(ev, attr).items():
            sent = pushed.delivered
            newest = max(sent, default=pushed.after)
            for n in pushed.owed(ev.notifications.get(uid, [])):
                nid, oid = n["id"], n.get("order_id")
                o = ev.orders[oid].order if oid in ev.orders else {}
                who = next((role for role in ("buyer", "seller") if o.get(f"{role}_id") == uid), f"user {uid}")
                detail = {"notification": nid, "channel": channel, "after": pushed.after, "newest": newest}
                if nid in sent:
                    if sent[nid] != (n.get("kind"), oid):
                        out.append(Violation("I18", oid, f"the {who}'s {channel} sent notification {nid} as "
                                                         f"{sent[nid][0]} of order {sent[nid][1]}; their inbox "
                                                         f"has it as {n.get('kind')} of order {oid}", detail))
                    continue
                if nid in pushed.refused:
                    why = f"it sent it only in a form the receiver had to refuse: {pushed.refused[nid]}"
                elif nid < newest:
                    why = f"though it sent later ones (up to {newest}): {gap}"
                else:
                    why = "in the seconds the harness waited for it after reading the inbox"
                out.append(Violation("I18", oid, f"the {who}'s {channel} never sent notification {nid} "
                                                 f"({n.get('kind')}), which their inbox has, {why}", detail))
    return out


CHECKS = {
    "I1": ("Conservation", i1_conservation),
    "I2": ("Exactly one terminal outcome", i2_one_outcome),
    "I3": ("Settle idempotent, payout at most once", i3_at_most_once),
    "I4": ("No release without evidence, confirmation or ruling", i4_release_grounds),
    "I5": ("Claim before irreversible node action", i5_claim_before_effect),
    "I6": ("Concurrent requests cannot both succeed", i6_races),
    "I7": ("Resolved or in custody before the lock expires", i7_resolved_before_expiry),
    "I8": ("Lock outlives the trade timers", i8_lock_outlives_timers),
    "I9": ("No shipping or dispute before funding evidence", i9_funding_first),
    "I10": ("Payout invoice checked", i10_payout_invoice),
    "I11": ("Database reconciled with the nodes", i11_db_matches_nodes),
    "I12": ("A dispute freezes automatic release and refund", i12_dispute_freezes),
    "I13": ("Fees never touch the escrowed amount", i13_fees_apart),
    "I15": ("Liveness: time alone reaches a terminal state", i15_liveness),
    "I16": ("Operator gone: LN funds return", i16_operator_gone),
    "I18": ("Both parties told of every change", i18_both_told),
}
