"""Dependencies: the session, the current user, and the one permission check."""

from __future__ import annotations

import anyio

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session

from ..context import AppContext
from ..services import accounts, policy, records, tokens
from ..services.faults import planted
from ..services.errors import NotAuthenticated, NotFound, PermissionDenied
from ..store.db import REQUEST_SESSIONS
from ..services.records import OrderRecord
from ..store.models import User
from . import ratelimit
from .routing import LOCAL_WRITER, SESSION, SESSION_END
from .params import Id

# The dependencies are ``async def`` on purpose: FastAPI runs each plain ``def`` dependency in
# a worker thread of its own, and a request that hopped threads four or five times spent most
# of its time on the hops (a listing read took 2.0 ms in-process against 0.5 ms for a bare
# ping). What they do on the event loop is short and never waits on a lock: reading the
# context, a token check, a primary-key read. The endpoint with its commit is the one hop
# (api/routing.Route); a writer's BEGIN is one more.


async def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _writer_gate(request: Request, ctx: AppContext) -> anyio.Lock | None:
    """On SQLite, write requests queue here, in the event loop, before they take a worker
    thread. Queued in threads instead (on the write lock), forty waiting writers filled the
    thread pool while the lock holder waited for a thread to run its endpoint: every write
    then failed with "database is locked" after the 30 s busy timeout."""
    # The queue is per process; with several app processes the compare-and-swap alone keeps
    # racing writers apart. The planted skip_cas bug stands for such a deployment.
    if request.method in SAFE_METHODS or not ctx.db.single_writer or planted(ctx.settings, "skip_cas"):
        return None
    gate = getattr(request.app.state, "sqlite_writer_gate", None)
    if gate is None:
        gate = request.app.state.sqlite_writer_gate = anyio.Lock(fast_acquire=True)  # see session_slots
    return gate


async def get_session(request: Request) -> Session:
    """The request's one session: a reader for safe methods, a writer otherwise. Called again
    in the same request (``DbSession`` and the dependencies below that call it directly), it
    gives the same session.

    A reader is opened and ended on the event loop: it begins lazily, and never waits for a
    lock. A writer commits in a worker thread, since that may wait for the disk: in the
    endpoint's own thread (on the event loop for a ``routing.database_only`` endpoint whose
    SQLite writer has begun). On SQLite a sync endpoint's writer begins on the event loop if the
    write lock is free, in a thread if it would have to wait; an async endpoint's begins only if
    its statements need it (``store.db.Prepared.arows``). Requests hold at most ``REQUEST_SESSIONS``
    sessions at once, the others wait here, so a checkout on the event loop never waits for
    the pool (it would wait for connections that only the event loop can give back).

    It is no ``yield`` dependency: ``routing.Route`` ends the session (commit, or rollback on
    an error) when the endpoint's answer is ready, before the response is sent, through the
    ``end`` left in the request's scope. FastAPI's exit stack for a yield dependency cost a
    listing read 3-7 % of its CPU."""
    ended = request.scope.get(SESSION_END, False)
    if ended is not None:
        if ended:  # opened earlier in this request
            return request.scope[SESSION]
        raise RuntimeError(f"{request.method} {request.url.path}: the request's session needs a route of class "
                           "api.routing.Route, which ends it before the response")
    ctx: AppContext = request.app.state.ctx
    gate = _writer_gate(request, ctx)
    if gate is not None:
        await gate.acquire()
    slots = getattr(request.app.state, "session_slots", None)
    if slots is None:
        # fast_acquire: a free slot is taken without a turn of the event loop (anyio's default
        # yields one, a twentieth of a page read's CPU); the request yields soon enough after.
        slots = request.app.state.session_slots = anyio.Semaphore(REQUEST_SESSIONS, fast_acquire=True)
    write = request.method not in SAFE_METHODS
    try:
        await slots.acquire()
        try:
            unit = ctx.db.session(write=write)
            session = unit.__enter__()
        except BaseException:
            slots.release()
            raise
    except BaseException:
        if gate is not None:
            gate.release()
        raise

    def close(exc: BaseException | None) -> None:
        # commits, or rolls back on an error; the error itself is the caller's to raise
        unit.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    async def end(exc: BaseException | None) -> None:
        try:
            # A writer's endpoint has usually committed in its own thread (api/routing.Route), or
            # written one statement alone (store.db.Prepared.arows): then nothing is left that could
            # wait, and the session ends here. So does an SQLite writer that holds the write lock (an
            # async endpoint's): its commit waits for no one, as a routing.database_only endpoint's.
            if write and session.in_transaction() and not session.info.get(LOCAL_WRITER):
                with anyio.CancelScope(shield=True):  # a client that hangs up must not leave a writer open
                    await run_in_threadpool(close, exc)
            else:
                close(exc)  # nothing awaited: nothing to shield (a scope cost a read 3 %)
        finally:
            slots.release()
            if gate is not None:
                gate.release()

    request.scope[SESSION_END] = end  # from here on, Route ends it, whatever happens
    request.scope[SESSION] = session
    # BEGIN IMMEDIATE may wait for SQLite's write lock (the worker, another process): then it
    # waits in a thread. Usually the lock is free and it begins here, so the writer queue's
    # holder hops threads once, for its endpoint and commit, not twice; each hop waits for a
    # turn of the busy event loop. On PostgreSQL a BEGIN waits for nothing: it goes with the
    # first statement. An async endpoint's writer does not begin here: its statements are
    # awaited (store.db.Prepared.arows), a read outside the transaction and an INSERT committed
    # alone where it can, as on PostgreSQL: a listing write then costs 0.70 ms of CPU, not 0.82.
    if write and ctx.db.single_writer and not getattr(request.scope.get("route"), "awaits_statements", False):
        if not ctx.db.begin_now(session):
            await run_in_threadpool(session.connection)
        # It holds the write lock: a routing.database_only endpoint may run on the event loop.
        # Not where writers do not queue at the gate (the planted skip_cas bug): its check,
        # commit, sleep and write would sleep on the loop, and the race it plants could not
        # happen. (Its writer still begins here: begun lazily by a dependency on the loop, it
        # waited there for the lock held by a request that needed the loop to go on.)
        if gate is not None:
            session.info[LOCAL_WRITER] = True
    return session


# Every route takes the session through this one object, or through get_session called with
# its request, so a request never holds two sessions (two SQLite writers). ``routing.Route``
# ends the session before the response is sent; ending it after (FastAPI's default for a
# yield dependency) a client could be told 201 and not find the row on its next request, or
# be told success for a commit that then failed.
DbSession = Depends(get_session)


# The dependencies below take the request alone and call what they need (the session, the
# signed-in user) directly, remembered in the request's scope. FastAPI works out each
# sub-dependency's cache key on every request and calls it: a listing write went through six,
# an order's ship through ten, and that bookkeeping was a sixth of the write's CPU. What
# FastAPI would have documented from ``HTTPBearer`` in the tree, ``openapi`` documents from
# the ``signs_in`` mark.

def signs_in(dependency):
    """Mark a dependency that reads the bearer token: the OpenAPI document says so (api/openapi)."""
    dependency.signs_in = True
    return dependency


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, as FastAPI's ``HTTPBearer`` reads it."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if token and scheme.lower() == "bearer" else None


USER = "escrowlab.user"  # in a request's scope, once current_user has read it


@signs_in
async def current_user(request: Request) -> User:
    """The signed-in user as an ORM object, for routes that change or show the account itself
    (and a new order): ``current_principal``'s checks, on the row read once as the object; the
    principal other dependencies ask for is taken from it (it used to read the principal's row,
    then the same row again as the object)."""
    scope = request.scope
    user = scope.get(USER)
    if user is None:  # once a request: called directly and through Depends, one token check and one read
        session = await get_session(request)
        principal = scope.get(PRINCIPAL)
        if principal is None:
            claims = _request_claims(request)
            user = _checked(session.get(User, int(claims["sub"])), claims, request)
            scope[PRINCIPAL] = accounts.Principal(*(getattr(user, k) for k in accounts.Principal._fields))
        else:  # a dependency before this one read the principal
            user = session.get(User, principal.id)
            if user is None:  # erased since its row was read: a reader on PostgreSQL reads each statement anew
                raise NotAuthenticated("token no longer valid")
        scope[USER] = user
    return user


def user_from_token(token: str | None, ctx: AppContext, session: Session, request: Request | None = None) -> User:
    """The signed-in user: a valid access token of an account that still exists, unblocked."""
    return _signed_in(token, ctx, lambda user_id: session.get(User, user_id), request)


PRINCIPAL = "escrowlab.principal"  # in a request's scope, once current_principal has read it


@signs_in
async def current_principal(request: Request) -> accounts.Principal:
    """``current_user`` where the route needs only who it is and their roles (the token check,
    ``require_role``, the order and listing policies): the same checks and the same write limit,
    the user read as one row (awaited on PostgreSQL until the session has begun). Loading the ORM
    object was a seventh of a listing write's CPU."""
    scope = request.scope
    principal = scope.get(PRINCIPAL)
    if principal is None:  # once a request, as current_user
        session = await get_session(request)
        claims = _request_claims(request)
        principal = scope[PRINCIPAL] = _checked(await accounts.principal(session, int(claims["sub"])), claims, request)
    return principal


def _signed_in(token: str | None, ctx: AppContext, load, request: Request | None):
    claims = _claims(token, ctx)
    return _checked(load(int(claims["sub"])), claims, request)


CLAIMS = "escrowlab.claims"  # in a request's scope, once its token has been checked


def _request_claims(request: Request) -> dict:
    """The claims of the request's valid access token, checked once a request."""
    claims = request.scope.get(CLAIMS)
    if claims is None:
        claims = request.scope[CLAIMS] = _claims(bearer_token(request), request.app.state.ctx)
    return claims


def _claims(token: str | None, ctx: AppContext) -> dict:
    """A valid access token's claims."""
    if token is None:
        raise NotAuthenticated("log in first: send 'Authorization: Bearer <access token>'")
    return tokens.verify(ctx.settings.secret_key, token, "access")


def _checked(user, claims: dict, request: Request | None):
    """``user`` if the token's claims still hold for it (an account that still exists, unblocked),
    counted against the write limit for a write."""
    if user is None or claims.get("ver", 0) != user.token_version:
        raise NotAuthenticated("token no longer valid")
    if user.blocked:
        raise PermissionDenied("this account is blocked")
    if request is not None and request.method not in SAFE_METHODS:
        ratelimit.hit(request, "write_account", str(user.id))
    return user


@signs_in
async def chain_tip(request: Request) -> int | None:
    """The chain height a transition records (``AppContext.tip``: the hub's, cached for a
    second), for a signed-in user's routes that change an order. Declared before the route's
    other dependencies, so it is known before the request's writer begins: when the cache is
    old, the hub is asked in a worker thread, and a ``routing.database_only`` endpoint then runs
    on the event loop with no node call inside its transaction. The token is checked first: a
    request without a valid one is told so, and never sends the app to the hub."""
    _request_claims(request)
    ctx: AppContext = request.app.state.ctx
    if ctx.hub is None:
        return None
    height = ctx.fresh_tip()
    return height if height is not None else await run_in_threadpool(ctx.tip)


async def anonymous_write(request: Request) -> None:
    """Writes without an account (registration, login) count against the client address."""
    ratelimit.hit(request, "write_address", ratelimit.client_address(request))


def require_role(role: str):
    """The signed-in user, as a ``Principal``, if they have ``role``."""
    @signs_in
    async def dep(request: Request) -> accounts.Principal:
        user = await current_principal(request)
        if not user.has_role(role):
            raise PermissionDenied(f"this needs the {role} role")
        return user
    return dep


def authorized_order(action: str):
    """Read the order in the path (a record, ``services.records``) and check, once, that the
    user may do ``action`` to it."""
    @signs_in
    async def dep(order_id: Id, request: Request) -> OrderRecord:
        user = await current_principal(request)
        session = await get_session(request)
        return authorize_order(user, order_id, await records.aread(session, order_id), action, request.app.state.ctx)
    return dep


def authorize_order(user, order_id: int, order: OrderRecord | None, action: str, ctx: AppContext) -> OrderRecord:
    """``order`` if ``user`` may do ``action`` to it; a stranger is told it does not exist."""
    if order is None:
        raise NotFound(f"order {order_id} does not exist")
    policy.hide_unrelated(user, order)  # 404, not 403: a stranger cannot tell it exists
    policy.check_order(user, order, action, ctx.settings)
    return order
