"""The signed-in user's own account (/me) and the admin's view of all accounts (/admin/users)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import accounts, inbox
from ...services.accounts import Principal
from ...store.models import User
from ..routing import Route
from ..deps import current_user, get_ctx, DbSession, require_role
from ..params import Id
from ..schemas.accounts import (AddressIn, AddressOut, BlockIn, MarkedReadOut, NotificationOut, NotificationPage,
                                PayoutNodeIn, RoleChangeIn, UserOut, UserPage, UserUpdate)

router = APIRouter(route_class=Route, tags=["users"])
admin_only = require_role("admin")


@router.get("/me")
async def me(user: User = Depends(current_user)) -> UserOut:
    return UserOut.of(user)


@router.patch("/me")
def update_me(body: UserUpdate, user: User = Depends(current_user)) -> UserOut:
    if body.display_name is not None:
        accounts.set_display_name(user, body.display_name)
    return UserOut.of(user)


@router.put("/me/address")
def set_address(body: AddressIn, user: User = Depends(current_user),
                ctx: AppContext = Depends(get_ctx)) -> AddressOut:
    """Store the shipping address encrypted; its hash is what couriers report on delivery."""
    stored = accounts.set_address(ctx, user, body.address)
    return AddressOut(address=stored, address_hash=user.address_hash or "")


@router.get("/me/address")
def get_address(user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx)) -> AddressOut:
    return AddressOut(address=accounts.get_address(ctx, user), address_hash=user.address_hash or "")


@router.put("/me/payout-node")
def bind_payout_node(body: PayoutNodeIn, user: User = Depends(current_user),
                     ctx: AppContext = Depends(get_ctx)) -> UserOut:
    """Bind the node the hub asks for payout invoices (checked for shape, not contacted yet)."""
    accounts.bind_payout_node(ctx, user, body.node_pubkey, body.rest_url, body.macaroon_hex, body.tls_cert_pem)
    return UserOut.of(user)


@router.delete("/me/payout-node", status_code=status.HTTP_204_NO_CONTENT)
def unbind_payout_node(user: User = Depends(current_user)) -> None:
    accounts.unbind_payout_node(user)


@router.get("/me/notifications")
def notifications(unread: bool = False, limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0),
                  user: User = Depends(current_user), session: Session = DbSession) -> NotificationPage:
    """Newest first; ``unread=true`` keeps only those not yet marked read."""
    items, total = inbox.notifications(session, user, unread, limit, offset)
    return NotificationPage(items=[NotificationOut.of(n) for n in items], total=total, limit=limit, offset=offset)


@router.post("/me/notifications/read")
def mark_notifications_read(user: User = Depends(current_user),
                            session: Session = DbSession) -> MarkedReadOut:
    return MarkedReadOut(marked=inbox.mark_all_read(session, user))


@router.get("/admin/users")
def list_users(limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0),
               _admin: Principal = Depends(admin_only), session: Session = DbSession) -> UserPage:
    users, total = accounts.list_users(session, limit, offset)
    return UserPage(items=[UserOut.of(u) for u in users], total=total, limit=limit, offset=offset)


@router.post("/admin/users/{user_id}/roles")
def change_role(user_id: Id, body: RoleChangeIn, admin: Principal = Depends(admin_only),
                session: Session = DbSession) -> UserOut:
    if body.grant:
        user = accounts.grant_role(session, user_id, body.role)
    else:
        user = accounts.revoke_role(session, admin, user_id, body.role)
    return UserOut.of(user)


@router.post("/admin/users/{user_id}/block")
def block(user_id: Id, body: BlockIn, admin: Principal = Depends(admin_only),
          session: Session = DbSession) -> UserOut:
    """Block (revoking the user's tokens) or unblock an account."""
    return UserOut.of(accounts.set_blocked(session, admin, user_id, body.blocked))
