"""The marketplace's own background loop: closes ended auctions, dispatches the
notification outbox (webhooks) and applies GDPR retention.

It runs in a thread started from the app's lifespan (``run_market_loop``), next
to the escrow worker and independent of it. Each step is also a plain function
(``auctions.close_due``, ``outbox.dispatch_once``, ``gdpr.apply_retention``)
that another loop, such as the worker's, can call instead.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from regtest_cluster.nodes.bitcoind import RpcError
from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.nodes.threadnames import named

from ..context import AppContext
from . import auctions, gdpr, outbox
from .errors import DomainError

log = logging.getLogger("escrowlab.market_loop")
RETENTION_EVERY_S = 3600.0


class MarketLoop:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client()
        self._last_retention = 0.0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=named(self._run), name="market-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._http.close()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._wake.wait(self.ctx.settings.market_loop_interval_s)
            self._wake.clear()

    def tick(self) -> None:
        steps = [("auctions", lambda: auctions.close_due(self.ctx)),
                 ("outbox", lambda: outbox.dispatch_once(self.ctx, self._http))]
        if time.monotonic() - self._last_retention > RETENTION_EVERY_S:
            self._last_retention = time.monotonic()
            steps.append(("retention", lambda: gdpr.apply_retention(self.ctx)))
        for what, step in steps:
            try:
                step()
            except (DomainError, RpcError, LndError, httpx.HTTPError, OSError) as exc:
                log.warning("market loop %s: %s (retrying next pass)", what, exc)
            except Exception:  # noqa: BLE001 - one failing step must not stop the loop
                log.exception("market loop %s failed (retrying next pass)", what)
