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


def check(ev: Evidence, cx: Context, only: tuple[str, ...] | None = None) -> dict[str, list[Violation]]:
    _contribute(ev)
    return {inv: [v for _name, fn in fns for v in fn(ev, cx)]
            for inv, fns in sorted(registry().items(), key=lambda kv: int(kv[0][1:]))
            if only is None or inv in only}
