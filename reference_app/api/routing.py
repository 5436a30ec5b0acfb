"""The route class every router of the API uses: one worker-thread hop per request.

FastAPI runs a plain ``def`` endpoint in a worker thread, then validates its answer in a
second one, and the request's session (``deps.get_session``) commits in a third. Each hop
costs a thread hand-over, and on two cores the threads queue for the GIL behind the event
loop. ``Route`` runs a sync endpoint *and its commit* in one hop, then validates the answer
on the event loop. The commit still comes before the response, as ``deps.DbSession``
promises, and an error at commit is the endpoint's error, handled like any other.

An endpoint marked ``@database_only`` hops no thread at all where its database cannot make
it wait: on SQLite, once its writer has begun (``deps.get_session``), this request holds the
write lock, so its statements and its commit wait for no one; they run on the event loop.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Coroutine

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ..store.db import READER


# Set on a session by deps.get_session: an SQLite writer that has begun, so holds the write lock.
LOCAL_WRITER = "escrowlab_local_writer"
# In a request's scope: None until deps.get_session opens the request's session, then the
# coroutine function that ends it (commit, or rollback given an error). Route calls it.
SESSION_END = "escrowlab.session_end"
# In a request's scope once deps.get_session has opened it: the session itself.
SESSION = "escrowlab.session"


def database_only(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a sync endpoint whose work is its session's statements and nothing else: no node,
    no HTTP, no sleep. Where the database cannot make it wait, it runs on the event loop.

    A thread hop cost a listing write a sixth of its CPU (the hand-over to the pool and back,
    with the event loop and the thread taking turns at the GIL), to wait for nothing: SQLite's
    work is CPU in this process either way. With WAL and ``synchronous=NORMAL`` a commit
    appends to the log without fsync; the checkpoints, which sync, run in a thread of their own
    (``store.db._Checkpointer``)."""
    endpoint.database_only = True  # type: ignore[attr-defined]
    return endpoint


def in_one_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` as a coroutine that runs it, then commits its session, in one worker thread
    (on the event loop if it is ``database_only`` and its session a begun SQLite writer)."""
    local = getattr(endpoint, "database_only", False)

    @functools.wraps(endpoint)  # FastAPI reads the parameters through __wrapped__
    async def run(*args: Any, **kwargs: Any) -> Any:
        session = kwargs.get("session")

        def work() -> Any:
            result = endpoint(*args, **kwargs)
            if isinstance(session, Session) and session.in_transaction() and not session.info.get(READER):
                session.commit()
            return result
        if local and isinstance(session, Session) and session.info.get(LOCAL_WRITER):
            return work()
        return await run_in_threadpool(work)
    return run


class Route(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # An async endpoint runs on the event loop: its statements are awaited (store.db.Prepared's
        # arows), and its SQLite writer begins only if one of them needs it (deps.get_session).
        self.awaits_statements = inspect.iscoroutinefunction(endpoint)
        if not self.awaits_statements:
            endpoint = in_one_hop(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler (the dependencies, the endpoint, its answer), then the end of the
        request's session if ``deps.get_session`` opened one: before the response is sent, so
        a client told 201 finds the row on its next request, and a commit that fails is the
        request's error, handled like any other."""
        handle = super().get_route_handler()

        async def run(request: Request) -> Response:
            request.scope[SESSION_END] = None
            try:
                response = await handle(request)
            except BaseException as exc:
                await _end_session(request.scope, exc)
                raise
            await _end_session(request.scope, None)
            return response
        return run


async def _end_session(scope: dict, exc: BaseException | None) -> None:
    """End the request's session, if one was opened, once; a later ``get_session`` is refused."""
    end = scope[SESSION_END]
    scope[SESSION_END] = False
    if end:
        await end(exc)


def answer(model: type[BaseModel], data: Any, status_code: int = 200) -> Response:
    """``data`` checked against ``model`` and serialised once, to JSON bytes in pydantic's core.

    For hot read endpoints that build plain rows: given a model object, FastAPI checks it
    against the route's ``response_model`` again and serialises through Python objects. The
    route keeps its ``response_model`` for the OpenAPI document; a returned ``Response`` is
    sent as it is."""
    return Response(model.model_validate(data).model_dump_json(), status_code=status_code,
                    media_type="application/json")
