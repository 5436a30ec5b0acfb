"""The hub's hold invoices: issue, read node truth, settle, cancel.

Facts relied on (lnd): states are OPEN, SETTLED, CANCELED, ACCEPTED; settle is
valid only from ACCEPTED and succeeds again when already settled; cancel fails
on a settled invoice; "unable to locate invoice" means it is gone, i.e.
cancelled (and possibly garbage-collected).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.nodes.lnd_grpc import LndGrpc

from .errors import NodeUnavailable

GONE = ("unable to locate invoice", "there are no existing invoices")


@dataclass(frozen=True)
class InvoiceTruth:
    """What the node says about one hold invoice."""

    state: str                      # OPEN | ACCEPTED | SETTLED | CANCELED
    amt_paid_sats: int
    htlc_expiry_height: int | None  # lowest expiry of the accepted HTLCs


def node_call(fn, *args, **kwargs):
    """Run a node call; an unreachable node becomes NodeUnavailable (503, nothing changed)."""
    try:
        return fn(*args, **kwargs)
    except LndError as exc:
        if exc.status == 0 or exc.status >= 502:
            raise NodeUnavailable(f"the Lightning node is unreachable: {exc.message}") from exc
        raise


def new_preimage() -> tuple[bytes, bytes]:
    preimage = os.urandom(32)
    return preimage, hashlib.sha256(preimage).digest()


def block_height(hub: LndGrpc) -> int:
    return node_call(hub.height)


def issue(hub: LndGrpc, payment_hash: bytes, amount_sats: int, cltv_expiry: int, expiry_s: int,
          memo: str) -> str:
    return node_call(hub.add_hold_invoice, payment_hash, amount_sats, cltv_expiry, expiry_s, memo)["payment_request"]


def truth_from(invoice: dict) -> InvoiceTruth:
    htlcs = [h for h in invoice.get("htlcs", []) if h.get("state") in ("ACCEPTED", "SETTLED")]
    expiry = min((int(h["expiry_height"]) for h in htlcs), default=None)
    return InvoiceTruth(state=invoice.get("state", "OPEN"),
                        amt_paid_sats=int(invoice.get("amt_paid_sat", 0) or 0),
                        htlc_expiry_height=expiry)


def lookup(hub: LndGrpc, payment_hash: bytes) -> InvoiceTruth:
    try:
        return truth_from(node_call(hub.lookup_invoice, payment_hash))
    except LndError as exc:
        if any(g in exc.message for g in GONE):
            return InvoiceTruth("CANCELED", 0, None)
        raise


def pending(hub: LndGrpc) -> dict[str, InvoiceTruth]:
    """What the node says of every invoice still open or held, by payment hash (hex)."""
    return {base64.b64decode(invoice["r_hash"]).hex(): truth_from(invoice)
            for invoice in node_call(hub.pending_invoices)}


def settle(hub: LndGrpc, preimage: bytes) -> None:
    """Settle (idempotent). Raises LndError if the invoice is not ACCEPTED or SETTLED."""
    node_call(hub.settle_invoice, preimage)


def cancel(hub: LndGrpc, payment_hash: bytes) -> None:
    """Cancel (idempotent on a cancelled or vanished invoice). Raises on a settled one."""
    try:
        node_call(hub.cancel_invoice, payment_hash)
    except LndError as exc:
        if not any(g in exc.message for g in GONE):
            raise
