"""Lightning deposits through the hub (LNDHub-style accounts).

The hub issues an invoice for the user; once the node says SETTLED the user is
credited ``floor(amt_paid_msat / 1000)``, once per payment hash (the row's
state moves OPEN -> CREDITED in the same transaction as the transfer keyed
``ln_in:<hash>``). Node truth comes from a lookup, or from an invoice update
the caller already holds (a subscription).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from regtest_cluster.nodes.lnd import LndError, unb64

from ...context import AppContext
from ...store.models_ledger import LnDepositInvoice
from ..errors import ValidationFailed
from ..holds import node_call
from . import ledger
from .ledger import HUB_LN, user_account


@dataclass(frozen=True)
class InvoiceView:
    payment_hash: str
    payment_request: str
    amount_sats: int
    state: str           # OPEN | CREDITED | CLAIMED (being paid internally) | PAID_INTERNAL | CANCELED
    credited_sats: int


def _invoice_view(row: LnDepositInvoice) -> InvoiceView:
    return InvoiceView(row.payment_hash, row.payment_request, row.amount_sats, row.state, row.credited_sats)


def ln_deposit_invoice(ctx: AppContext, user_id: int, amount_sats: int, memo: str = "",
                       expiry_s: int = 3600) -> InvoiceView:
    """A hub invoice that credits ``user_id`` once it settles."""
    if amount_sats <= 0:
        raise ValidationFailed(f"amount must be positive, got {amount_sats}", field="amount_sats")
    created = node_call(ctx.hub.addinvoice, amount_sats, memo or f"deposit for user {user_id}", expiry_s)
    row = LnDepositInvoice(payment_hash=unb64(created["r_hash"]).hex(), user_id=user_id, amount_sats=amount_sats,
                           payment_request=created["payment_request"], state="OPEN")
    with ctx.db.session() as s:
        s.add(row)
        s.flush()
        return _invoice_view(row)


def credit_ln_deposit(ctx: AppContext, payment_hash: str, invoice: dict | None = None) -> InvoiceView:
    """Apply node truth to one deposit invoice: credit once if SETTLED, close it if CANCELED.

    ``invoice`` is the hub's invoice as a subscription or lookup returned it; without
    it the hub is asked.
    """
    truth = invoice if invoice is not None else lookup(ctx, payment_hash)
    with ctx.db.session() as s:
        row = s.scalar(select(LnDepositInvoice).where(LnDepositInvoice.payment_hash == payment_hash))
        if row is None:
            raise ValidationFailed(f"no custodial invoice {payment_hash}", field="payment_hash")
        if row.state == "OPEN":
            if truth.get("state") == "SETTLED":
                paid = int(truth.get("amt_paid_msat", 0) or 0) // 1000
                ledger.transfer(s, f"ln_in:{payment_hash}", "deposit_ln",
                                [(user_account(row.user_id, "available"), paid), (HUB_LN, -paid)])
                row.state, row.credited_sats = "CREDITED", paid
            elif truth.get("state") == "CANCELED":
                row.state = "CANCELED"
        return _invoice_view(row)


def poll_ln_deposits(ctx: AppContext) -> list[InvoiceView]:
    """Check every open deposit invoice on the hub; returns the ones that changed."""
    with ctx.db.session(write=False) as s:
        hashes = s.scalars(select(LnDepositInvoice.payment_hash).where(LnDepositInvoice.state == "OPEN")).all()
    changed = []
    for h in hashes:
        view = credit_ln_deposit(ctx, h)
        if view.state != "OPEN":
            changed.append(view)
    return changed


def lookup(ctx: AppContext, payment_hash: str) -> dict:
    """The hub's invoice; one the node no longer knows was cancelled (and garbage-collected)."""
    try:
        return node_call(ctx.hub.lookup_invoice, bytes.fromhex(payment_hash))
    except LndError as exc:
        if "unable to locate invoice" in exc.message:
            return {"state": "CANCELED"}
        raise
