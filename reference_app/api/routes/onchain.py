"""On-chain multisig escrow: bind your keys, see the escrow, sign its spend."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services.modes import onchain_multisig_api as escrow
from ...services.records import OrderRecord
from ...store.models import User
from ..routing import Route
from ..deps import authorized_order, current_user, get_ctx, DbSession
from ..schemas.onchain import EscrowOut, OnchainKeysIn, OnchainKeysOut, PsbtAccepted, PsbtIn, PsbtOut

router = APIRouter(route_class=Route, tags=["onchain"])


@router.put("/me/onchain-keys", response_model=OnchainKeysOut)
def bind_keys(body: OnchainKeysIn, user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
              session: Session = DbSession) -> OnchainKeysOut:
    """Bind the keys your future on-chain escrows use; sellers add a timeout_key."""
    keys = escrow.bind_keys(ctx, session, user, body.key, body.timeout_key)
    return OnchainKeysOut(key=keys.key, timeout_key=keys.timeout_key,
                          payout_address=escrow.mode_of(ctx).address_of(keys.key))


@router.get("/orders/{order_id}/escrow", response_model=EscrowOut)
def get_escrow(order: OrderRecord = Depends(authorized_order("view")), ctx: AppContext = Depends(get_ctx),
               session: Session = DbSession) -> EscrowOut:
    """Where to pay, how much, and what the chain shows: funding, confirmations, the spend."""
    return EscrowOut(**escrow.escrow_view(ctx, session, order))


@router.get("/orders/{order_id}/psbt", response_model=PsbtOut)
def get_psbt(order: OrderRecord = Depends(authorized_order("view")), user: User = Depends(current_user),
             ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> PsbtOut:
    """The escrow spend awaiting your signature, if any (404 otherwise)."""
    return PsbtOut(**escrow.awaiting_psbt(ctx, session, order, user))


@router.post("/orders/{order_id}/psbt", response_model=PsbtAccepted)
def post_psbt(body: PsbtIn, order: OrderRecord = Depends(authorized_order("view")), user: User = Depends(current_user),
              ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> PsbtAccepted:
    """Hand back the spend signed by your wallet; the marketplace broadcasts it."""
    return PsbtAccepted(**escrow.submit_psbt(ctx, session, order, user, body.psbt))
