"""Every invariant check by id, gathered from one module per escrow mode.

A mode module has ``CHECKS`` (``{"I1": (name, fn), ...}``, each ``fn(ev, cx)``
returning violations), ``MODE`` (its escrow mode's name) and may have
``contributions(ev) -> (channel_flows, hub_payment_hashes)``: money of that mode
that moves over the Lightning channels, which the conservation and at-most-once
checks must account for. Adding a mode is adding its module to this package: the
registry finds it.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from escrow_protocol.modes import MODE_NAMES
from harness.evidence import Evidence
from harness.oracle.base import Context, Violation


def _modules() -> tuple:
    found = [importlib.import_module(f"harness.oracle.{m.name}") for m in pkgutil.iter_modules([str(Path(__file__).parent)])
             if m.name not in ("base", "registry")]
    modes = [m for m in found if hasattr(m, "CHECKS")]
    return tuple(sorted(modes, key=lambda m: MODE_NAMES.index(m.MODE) if m.MODE in MODE_NAMES else len(MODE_NAMES)))


MODULES = _modules()

# Invariants whose checks arrive with the on-chain and custodial escrow modes.
NOT_YET = {"I14": "Custodial in-flight debits stay reserved", "I17": "Reorgs of funding or release roll back safely"}


def registry() -> dict[str, list[tuple[str, object]]]:
    """Every check by invariant, each mode's own."""
    checks: dict[str, list[tuple[str, object]]] = {}
    for module in MODULES:
        for inv, (name, fn) in module.CHECKS.items():
            checks.setdefault(inv, []).append((name, fn))
    return checks


def names() -> dict[str, str]:
    return {inv: fns[0][0] for inv, fns in registry().items()}


def _contribute(ev: Evidence) -> None:
    flows: dict[str, int] = {}
    hashes: set[str] = set()
    for module in MODULES:
        if hasattr(module, "contributions"):
            more_flows, more_hashes = module.contributions(ev)
            for node, delta in more_flows.items():
                flows[node] = flows.get(node, 0) + delta
            hashes |= more_hashes
    ev.other_channel_flows, ev.other_hub_payments = flows, hashes


def exercised(ev: Evidence, cx: Context) -> dict[str, int]:
    """Per invariant, how many applicable checks the evidence gave it: the orders (or races,
    snapshots, reorged blocks) it could judge. 0 means the story never exercised it, which a
    report must say rather than "0 violations"."""
    orders = [oe.order for oe in ev.orders.values()]
    events = {oid: [e["event"] for e in oe.events] for oid, oe in ev.orders.items()}
    ln = [oe for oe in ev.orders.values() if oe.order["escrow_mode"] == "ln_hold"]
    # payouts planned (Lightning, custodial), and on-chain escrows paid out (one spend each)
    payouts = sum(len(o["payouts"]) for o in orders) + sum(
        1 for o in orders if o["escrow_mode"] == "onchain_multisig" and o["state"] in ("RELEASED", "REFUNDED", "SPLIT"))
    moved = [o for o in orders if o["state"] in ("RELEASED", "REFUNDED", "SPLIT")]
    return {
        "I1": len(moved), "I2": len(orders), "I3": payouts,
        "I4": sum(1 for o in orders if o["state"] in ("RELEASED", "SPLIT", "RELEASE_PENDING", "SPLIT_PENDING")),
        "I5": sum(1 for oe in ln if oe.invoice and oe.invoice["state"] == "SETTLED"),
        "I6": len(cx.race_results),
        "I7": sum(1 for oe in ln if "funded" in events[oe.order["id"]]),
        "I8": sum(1 for oe in ln if oe.payment_request),
        "I9": sum(1 for es in events.values() if "ship" in es or "open_dispute" in es),
        "I10": sum(1 for o in orders for p in o["payouts"] if p["status"] == "SUCCEEDED"),
        "I11": sum(1 for o in orders if o["hold"] or o["payouts"]),
        "I12": sum(1 for es in events.values() if "open_dispute" in es or "delivery_timeout" in es),
        "I13": payouts,
        "I14": len(cx.custodial_snapshots),
        "I15": len(orders),
        "I16": len(orders) if cx.operator_gone else 0,
        "I17": len(cx.reorged_blocks),
        # each change both parties must be told of, and each notification judged against a stream
        # or a webhook
        "I18": sum(1 for oe in ev.orders.values() for e in oe.events if e["to_state"] != e["from_state"])
               + sum(len(s.owed(ev.notifications.get(uid, []))) for pushed in (ev.streamed, ev.hooked)
                     for uid, s in pushed.items()),
    }


def check(ev: Evidence, cx: Context, only: tuple[str, ...] | None = None) -> dict[str, list[Violation]]:
    _contribute(ev)
    return {inv: [v for _name, fn in fns for v in fn(ev, cx)]
            for inv, fns in sorted(registry().items(), key=lambda kv: int(kv[0][1:]))
            if only is None or inv in only}
