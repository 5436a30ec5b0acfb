"""Escrow modes behind one interface. The order flow (lifecycle, deadlines,
disputes, rulings) is shared; each mode supplies how funds are locked, how
funding is observed on node truth, and how a claimed outcome is carried out.

A mode implements ``EscrowMode``:
- ``open(session, order, buyer, funding)``: after the CREATED claim has
  committed, lock or request the funds and move the order on (or raise: the
  order is then undone);
- ``watch(height)``: each worker tick, observe funding and locks on the nodes
  and apply funded / timeout / lost / reorged transitions;
- ``drive(order_id, height)``: carry out a pending outcome; safe to repeat;
- ``expire(order_id)``: after a funding timeout was claimed, release what was
  requested (cancel the invoice, refund a partial deposit);
- ``guardian_due(session, height)``: orders whose lock nears its expiry, as
  ``services.deadlines.Due`` items (only modes with expiring locks have any;
  what the guardian then does is ``services.deadlines``' rule);
- ``start()`` / ``stop()`` / ``on_created(order_id)``: worker lifecycle hooks.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from escrow_protocol.modes import MODE_NAMES

from ...store.models import User
from ..accounts import Principal
from ..records import OrderRecord

__all__ = ["MODE_NAMES", "EscrowMode", "build"]



class EscrowMode(Protocol):
    name: str

    def open(self, session: Session, order: OrderRecord, buyer: User | Principal, funding: dict | None) -> None: ...
    def watch(self, height: int) -> None: ...
    def drive(self, order_id: int, height: int | None) -> str: ...
    def expire(self, order_id: int) -> None: ...
    def guardian_due(self, session: Session, height: int) -> list: ...  # of services.deadlines.Due
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def on_created(self, order_id: int) -> None: ...


def build(ctx) -> dict[str, EscrowMode]:
    """The modes this app can serve, given which nodes it has."""
    from .ln_hold import LnHoldMode

    modes: dict[str, EscrowMode] = {}
    if ctx.hub is not None:
        modes["ln_hold"] = LnHoldMode(ctx)
    if ctx.chain is not None:
        from .custodial import CustodialMode
        from .onchain_multisig import OnchainMode

        modes["onchain_multisig"] = OnchainMode(ctx)
        modes["custodial"] = CustodialMode(ctx)
    return modes
