"""Courier webhooks: the only way delivery evidence enters the system.

Rate limited per courier (rule ``webhook_courier``), counted after the signature
check: a forged or unsigned event keeps its 401 ``webhook_rejected`` and never
spends the courier's budget, so a flood of forgeries cannot starve the real
courier's deliveries. A correctly signed flood (a leaked key, a runaway client)
gets 429 ``rate_limited``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import webhooks
from .. import ratelimit
from ..routing import Route
from ..deps import get_ctx, DbSession
from ..schemas.orders import WebhookResult

router = APIRouter(route_class=Route, prefix="/webhooks", tags=["webhooks"])


async def raw_body(request: Request) -> bytes:
    return await request.body()  # the signature covers the raw bytes


@router.post("/courier/{courier}", response_model=WebhookResult)
def courier_event(courier: str, request: Request, body: bytes = Depends(raw_body),
                  x_escrowlab_timestamp: str | None = Header(default=None),
                  x_escrowlab_signature: str | None = Header(default=None),
                  ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> WebhookResult:
    """A signed tracking event. Delivered to the buyer's address moves a shipped order to DELIVERED."""
    event = webhooks.verify(ctx, courier, x_escrowlab_timestamp, x_escrowlab_signature, body)
    ratelimit.hit(request, "webhook_courier", courier)
    # the height after the signature: a forged event never sends the app to the hub
    return WebhookResult(**webhooks.handle(ctx, session, courier, event, ctx.tip()))
