"""The app factory: ``create_app(settings)`` builds everything; importing builds nothing."""

from __future__ import annotations

import gc
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .config import Settings
from .context import AppContext
from .ln import chain_client, hub_client
from .services import modes
from .services.crypto import Box
from .shares import Shares
from .store import migrate
from .store.db import NOTIFIED_USERS, Database


def own_process(settings: Settings) -> None:
    """What the app sets in a process of its own (``escrowlab app serve`` and ``app worker``, each
    of their processes, uvicorn serving it by its factory), and never in one that serves it beside
    other work (a test, a scenario): the GIL switch interval (``Settings.gil_switch_interval_s``).
    ``app serve`` sets it before it forks, so every process of it has it."""
    sys.setswitchinterval(settings.gil_switch_interval_s)


def prepare_once(settings: Settings) -> Settings:
    """Settle what N app processes started together would otherwise race on, before starting
    them: the development secrets (each would generate its own, and sign tokens the others
    refuse) and the schema (N migrations at once race on CREATE TABLE; PostgreSQL refused a
    second alembic_version). Returns the settings with the secrets filled in."""
    settings = settings.with_dev_defaults()
    if settings.auto_migrate:
        db = Database(settings.database_url)
        try:
            migrate.upgrade(db)
        finally:
            db.dispose()
    return settings


def build_context(settings: Settings, with_node: bool = True) -> AppContext:
    settings = settings.with_dev_defaults()
    db = Database(settings.database_url)
    if settings.auto_migrate:
        migrate.upgrade(db)
    hub = hub_client(settings) if with_node else None
    ctx = AppContext(settings=settings, db=db, box=Box(settings.encryption_keys), hub=hub,
                     chain=chain_client(settings) if with_node else None)
    if settings.process_group and settings.run_worker_inprocess:  # one of `app serve --processes N`
        ctx.shares = Shares(settings.process_index, settings.processes, settings.process_group)
    ctx.modes = modes.build(ctx)
    return ctx


def create_app(settings: Settings | None = None, *, ctx: AppContext | None = None,
               with_node: bool = True) -> FastAPI:
    """Build the app. ``with_node=False`` serves without a hub (accounts and listings only)."""
    ctx = ctx or build_context(settings or Settings(), with_node=with_node)
    if not ctx.modes and (ctx.hub is not None or ctx.chain is not None):
        ctx.modes = modes.build(ctx)  # a context whose nodes were attached after it was built
    from .services import accounts
    from .worker import Worker

    accounts.use_password_hashing(ctx.settings.password_hashing)

    worker = Worker(ctx) if (ctx.modes and ctx.settings.run_worker_inprocess) else None
    from .services.market_loop import MarketLoop

    market_loop = MarketLoop(ctx) if ctx.settings.run_market_loop else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        accounts.bootstrap_admin(ctx)
        if worker:
            worker.start()
        if market_loop:
            market_loop.start()
        # What exists now lives as long as the app: the cyclic collector need not look at it
        # again. Each full collection had walked every module, route, model and mapper: pauses
        # that set a read's p99 near 130 ms under load (bench api), 30-50 ms without them. (No
        # collection first: it cost a test process, which builds hundreds of apps, a third more.)
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # (a test process builds many apps: what this one froze may go now)
            if market_loop:
                market_loop.stop()
            if worker:
                worker.stop()

    # /docs is Swagger UI from the package's own files (web/docs.py), not FastAPI's CDN page; no ReDoc
    app = FastAPI(title="escrowlab reference marketplace", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="A Bitcoin/Lightning marketplace with hold-invoice escrow, "
                              "modelled on the seeds in shared/seeds.")
    app.state.ctx = ctx
    ctx.db.on_commit[NOTIFIED_USERS] = ctx.notified
    app.state.worker = worker
    app.state.market_loop = market_loop
    from .api import errors, openapi, ratelimit
    from .api.routes import DISPATCH

    errors.install(app)
    openapi.install(app)
    ratelimit.install(app, ctx.settings)
    for router in DISPATCH:
        app.include_router(router)
    from .web.docs import router as docs
    from .web.views import router as dashboard

    app.include_router(dashboard)
    app.include_router(docs)
    return app
