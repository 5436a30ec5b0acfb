"""The admin hub (metrics, monitoring, export, erasure) and each user's own GDPR tools."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import admin, gdpr
from ...services.accounts import Principal
from ...store.models import User
from ..routing import Route
from ..deps import current_user, get_ctx, DbSession, require_role
from ..params import Id

router = APIRouter(route_class=Route, tags=["admin"])
admin_only = require_role("admin")


@router.get("/admin/metrics")
def metrics(_admin: Principal = Depends(admin_only), ctx: AppContext = Depends(get_ctx),
            session: Session = DbSession) -> dict:
    """GMV, orders by state, locked sats by mode, open disputes, reconciliation status."""
    return admin.metrics(ctx, session)


@router.get("/transactions")
def transactions(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                 user: User = Depends(current_user), session: Session = DbSession) -> list[dict]:
    """Ledger transfers, newest first: all of them for admins, your own (your legs) for anyone else."""
    return admin.transactions(session, user, limit, offset)


@router.get("/transactions.csv", response_class=StreamingResponse)
def export_csv(user: User = Depends(current_user), session: Session = DbSession) -> StreamingResponse:
    """The financial activity export: one line per ledger entry, scoped like /transactions."""
    return StreamingResponse(admin.export_csv(session, user), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="escrowlab-transactions.csv"'})


@router.get("/me/export")
def export_me(user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
              session: Session = DbSession) -> dict:
    """Everything we hold about you, as JSON (GDPR art. 15/20)."""
    return gdpr.export(ctx, session, user)


@router.post("/me/erase")
def erase_me(user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
             session: Session = DbSession) -> dict:
    """Anonymise your account (refused while you have an open escrow); the books keep the money trail."""
    return gdpr.erase(ctx, session, user.id, user)


@router.post("/admin/users/{user_id}/erase")
def erase_user(user_id: Id, admin_user: Principal = Depends(admin_only), ctx: AppContext = Depends(get_ctx),
               session: Session = DbSession) -> dict:
    """Delete a user: anonymised as /me/erase does, under the same refusal rules."""
    return gdpr.erase(ctx, session, user_id, admin_user)
