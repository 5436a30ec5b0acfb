"""Rate limits: token buckets per client address and per account, in memory.

Each rule is a bucket of ``burst`` requests refilled at ``per_min`` a minute.
Logins are limited per address (credential stuffing across many accounts) and
per address and account (guessing one password); two-factor codes per account;
writes per account, anonymous writes (registration) per address, and courier
webhooks per courier, after their signature check (api/routes/webhooks.py). The per-account failure lockout (services/lockout.py) still applies
underneath: these limits cap the rate of attempts, the lockout their count.

A refusal is problem+json 429 with the stable code ``rate_limited`` and a
``Retry-After`` header. The buckets live in one process: behind several app
processes, each has its own (documented in SECURITY.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

from fastapi import FastAPI, Request

from ..config import Settings
from ..services.errors import DomainError

MAX_KEYS = 100_000  # least recently used buckets are forgotten beyond this (a full bucket is the default)


class RateLimited(DomainError):
    """Too many requests for one rule and key; ``retry_after_s`` says when one token is back."""

    code, status = "rate_limited", 429


class Limiter:
    def __init__(self, rules: dict[str, tuple[float, float]], clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, rule: str, key: str) -> None:
        """Take one token from ``rule``'s bucket for ``key``, or raise RateLimited."""
        if rule not in self.rules:
            return
        burst, per_min = self.rules[rule]
        rate = per_min / 60.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop((rule, key), (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1:
                self._buckets[(rule, key)] = (tokens, now)
                wait = math.ceil((1 - tokens) / rate) if rate > 0 else 3600
                raise RateLimited(f"too many requests ({rule}): try again in {wait} s",
                                  retry_after_s=wait, rule=rule)
            self._buckets[(rule, key)] = (tokens - 1, now)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)


def limiter_for(settings: Settings) -> Limiter:
    rules = {} if not settings.rate_limits_enabled else {
        name: (float(burst), float(per_min)) for name, (burst, per_min) in settings.rate_limits.items()}
    return Limiter(rules)


def install(app: FastAPI, settings: Settings) -> None:
    app.state.limiter = limiter_for(settings)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def hit(request: Request, rule: str, key: str) -> None:
    """Used by the routes and dependencies: count this request against ``rule`` for ``key``."""
    limiter: Limiter | None = getattr(request.app.state, "limiter", None)
    if limiter is not None:
        limiter.hit(rule, key)
