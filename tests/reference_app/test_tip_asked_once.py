"""The app's chain height (``AppContext.tip``): pushed by the hub's block stream while that runs,
else asked of the hub once a second at most, callers that find it old while another is asking
waiting for that answer instead of asking too. Pure tests of the cache: the hub here is a
stand-in that counts GetInfo calls and pushes the heights the test gives it (no escrow is
judged; tests/regtest_cluster/test_lnd_grpc.py runs the block stream on a real lnd)."""

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


class BlockStreamHub(CountingHub):
    """A stand-in hub with a block stream the test drives: ``push`` a height, ``end`` the stream."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.streams: list[tuple] = []

    def watch_blocks(self, on_block, on_error):
        self.opened += 1
        watch = StreamWatch()
        self.streams.append((on_block, on_error, watch))
        return watch

    def push(self, height: int) -> None:
        self.streams[-1][0](height)

    def end(self) -> None:
        _, on_error, watch = self.streams[-1]
        watch.done = True
        on_error(RuntimeError("the node ended the block stream"))


class StreamWatch:
    def __init__(self) -> None:
        self.done = self.cancelled = False

    def cancel(self) -> None:
        self.done = self.cancelled = True


def test_a_pushed_height_is_the_tip_at_any_age_and_the_hub_is_asked_again_once_the_stream_ends(monkeypatch):
    hub, blocks = BlockStreamHub(), []
    ctx = AppContext(settings=None, db=None, box=None, hub=hub)
    ctx.follow_blocks(blocks.append)
    ctx.follow_blocks(blocks.append)  # one stream, however often asked
    assert hub.opened == 1 and not ctx.tip_pushed
    assert ctx.tip() == 700 and hub.asked == 1  # nothing pushed yet: asked
    hub.push(705)
    assert blocks == [705] and ctx.tip_pushed
    ctx.note_tip(700)  # an asked height never overrides a pushed one
    later = time.monotonic() + 10 * AppContext.TIP_MAX_AGE_S
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert ctx.tip() == ctx.fresh_tip() == 705 and hub.asked == 1  # old, but pushed: never asked

    hub.end()
    assert not ctx.tip_pushed
    assert ctx.tip() == 700 and hub.asked == 2  # asked again, as before the stream
    ctx.follow_blocks(blocks.append)
    assert hub.opened == 1  # not again within BLOCKS_RETRY_S of the end
    monkeypatch.setattr(time, "monotonic", lambda: later + AppContext.BLOCKS_RETRY_S)
    ctx.follow_blocks(blocks.append)
    assert hub.opened == 2
    hub.push(706)
    assert ctx.tip() == 706 and hub.asked == 2

    # a stream that ends before any height came is tried again after twice as long, each time
    hub.end()
    monkeypatch.setattr(time, "monotonic", lambda: later + 2 * AppContext.BLOCKS_RETRY_S)
    ctx.follow_blocks(blocks.append)
    assert hub.opened == 3
    hub.end()
    monkeypatch.setattr(time, "monotonic", lambda: later + 3 * AppContext.BLOCKS_RETRY_S)
    ctx.follow_blocks(blocks.append)
    assert hub.opened == 3  # a second after that end is too soon now
    monkeypatch.setattr(time, "monotonic", lambda: later + 4 * AppContext.BLOCKS_RETRY_S)
    ctx.follow_blocks(blocks.append)
    assert hub.opened == 4
    hub.push(707)
    assert ctx.tip() == 707 and hub.asked == 2 and blocks[-1] == 707

    on_block, on_error, watch = hub.streams[-1]
    ctx.stop_following()
    assert watch.cancelled and not ctx.tip_pushed
    on_block(708)  # a block the stopped stream was already handing over: not the tip
    on_error(RuntimeError("cancelled"))
    assert not ctx.tip_pushed and blocks[-1] == 707 and ctx.tip() == 707 and hub.asked == 2
    monkeypatch.setattr(time, "monotonic", lambda: later + 4 * AppContext.BLOCKS_RETRY_S + AppContext.TIP_MAX_AGE_S)
    assert ctx.tip() == 700 and hub.asked == 3  # no longer pushed: a second on, asked
