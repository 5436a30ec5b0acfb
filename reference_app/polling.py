"""Waiting on a condition: the app's own, small, with backoff and no global timeout scaling."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll_until(condition: Callable[[], T], timeout_s: float, interval_s: float = 0.02,
               max_interval_s: float = 0.5) -> T | None:
    """Call ``condition`` until it returns something truthy and return that, or None once
    ``timeout_s`` has passed (it is always called at least once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval_s, left))
        interval_s = min(interval_s * 1.5, max_interval_s)
