"""The one ``wait_for``: deadlines scaled for slow machines, backoff, and a
failure that names the condition and the last value seen."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

# Set once from ClusterEnv.timeout_factor by whoever builds a cluster.
TIMEOUT_FACTOR = 1.0


class WaitTimeout(TimeoutError):
    """Raised when a condition given to ``wait_for`` is not met by its deadline."""


def set_timeout_factor(factor: float) -> None:
    global TIMEOUT_FACTOR
    TIMEOUT_FACTOR = factor


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str | None = None,
    interval: float = 0.02,
    max_interval: float = 0.5,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Exceptions listed in ``ignore`` count as "not yet" (e.g. connection refused
    while a daemon starts); the last one is reported if time runs out.
    """
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    last: object = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last = value
        except ignore as exc:  # noqa: PERF203 - polling by design
            last = exc
        if time.monotonic() >= deadline:
            name = what or getattr(condition, "__name__", "condition")
            raise WaitTimeout(
                f"timed out after {timeout * TIMEOUT_FACTOR:.1f}s waiting for {name}; last saw: {last!r}"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)
