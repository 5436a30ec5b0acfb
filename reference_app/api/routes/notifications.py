"""Notifications pushed: a server-sent events stream and outgoing webhook endpoints.

``GET /notifications/stream`` sends each of your notifications as an SSE event
(``id`` = notification id, ``event`` = its kind, ``data`` = JSON) once the change it
reports commits (the app's bell rings the stream: bell.py). Reconnect with
``Last-Event-ID`` (or ``?after=``) to resume without gaps. ``max_events`` ends the
stream after that many events (handy for scripts and tests).
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends, Header, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import outbox
from ...services.faults import planted
from ...store.models import User
from ..routing import Route
from ..deps import current_user, get_ctx, DbSession
from ..params import Id
from ..schemas.market import WebhookIn, WebhookOut
from .wallet import account_holder

router = APIRouter(route_class=Route, tags=["notifications"])
# Unrung, a stream still looks this often: for a ring that was lost (another process's, whose
# datagram was dropped) or a notification written by a path that rings nobody.
FALLBACK_S = 2.0
KEEPALIVE_S = 15.0


@router.get("/notifications/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream(user: User = Depends(account_holder), ctx: AppContext = Depends(get_ctx),
                 after: int = Query(0, ge=0), max_events: int | None = Query(None, ge=1, le=10_000),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
    user_id = user.id
    if last_event_id and planted(ctx.settings, "stream_ignores_last_event_id"):
        start = await outbox.newest_id(ctx, user_id)  # resumes at "now": what came while away is lost

    async def events():
        cursor, sent, quiet_since = start, 0, time.monotonic()
        yield "retry: 2000\n\n"
        # A client that hangs up ends the stream: Starlette's StreamingResponse listens for the
        # disconnect beside it and cancels it (ASGI 2.3, as uvicorn serves), or its next write
        # fails (2.4). Asking after every page as well (Request.is_disconnected) cost 2 % of the
        # app's CPU in an escrow (py-spy, bench escrow).
        with ctx.bell.listening(user_id) as rung:
            while not ctx.bell.closed:
                rung.clear()  # before the read: a commit after it rings again
                page = await outbox.feed_page(ctx, user_id, cursor)
                if max_events:
                    page = page[:max_events - sent]
                if page:
                    cursor, sent, quiet_since = page[-1]["id"], sent + len(page), time.monotonic()
                    # the page as one chunk: one write to the socket, not one an event
                    yield "".join(f"id: {item['id']}\nevent: {item['kind']}\ndata: {json.dumps(item)}\n\n"
                                  for item in page)
                    if max_events and sent >= max_events:
                        return
                if len(page) >= outbox.FEED_PAGE:
                    continue  # a full page: there may be more already
                try:
                    await asyncio.wait_for(rung.wait(), FALLBACK_S)
                except TimeoutError:
                    pass
                if time.monotonic() - quiet_since >= KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/me/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookOut)
def add_webhook(body: WebhookIn, user: User = Depends(current_user), ctx: AppContext = Depends(get_ctx),
                session: Session = DbSession) -> WebhookOut:
    """Every notification of yours is POSTed here, signed with the secret returned (once)."""
    endpoint, secret = outbox.add_endpoint(ctx, session, user, body.url)
    return WebhookOut(id=endpoint.id, url=endpoint.url, active=True, secret=secret)


@router.get("/me/webhooks", response_model=list[WebhookOut])
def list_webhooks(user: User = Depends(current_user), session: Session = DbSession) -> list[WebhookOut]:
    return [WebhookOut(id=e.id, url=e.url, active=e.active) for e in outbox.endpoints_of(session, user)]


@router.delete("/me/webhooks/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_webhook(endpoint_id: Id, user: User = Depends(current_user),
                   session: Session = DbSession) -> None:
    outbox.remove_endpoint(session, user, endpoint_id)
