"""The app's chain height (``AppContext.tip``) is asked of the hub once a second at most: callers
that find it old while another is asking wait for that answer instead of asking too. A pure
test of the cache: the hub here is a stand-in that counts GetInfo calls (no escrow is judged)."""

from __future__ import annotations

import threading
import time

from reference_app.context import AppContext


class CountingHub:
    """Answers ``height`` after a while, as a node's round trip does, and counts the asks."""

    def __init__(self) -> None:
        self.asked, self.at = 0, 700
        self._lock = threading.Lock()

    def height(self) -> int:
        with self._lock:
            self.asked += 1
        time.sleep(0.05)
        return self.at


def test_callers_that_find_the_height_old_together_ask_the_hub_once():
    hub = CountingHub()
    ctx = AppContext(settings=None, db=None, box=None, hub=hub)
    start = threading.Barrier(8)
    seen: list[int] = []

    def caller() -> None:
        start.wait()
        seen.append(ctx.tip())

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [700] * 8 and hub.asked == 1
    hub.at = 701
    ctx._tip = (time.monotonic() - AppContext.TIP_MAX_AGE_S, 700)  # a second old: asked again
    assert ctx.tip() == 701 and hub.asked == 2
    assert ctx.tip() == 701 and hub.asked == 2  # fresh: not asked
