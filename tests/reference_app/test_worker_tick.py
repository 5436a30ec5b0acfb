"""A worker woken by commits (many a second under load) still looks for what came due by time
and height once an interval, and no more often; what woke it is carried out on every tick."""

from __future__ import annotations

from reference_app.worker import Worker


def test_woken_ticks_look_for_due_deadlines_once_an_interval_and_drive_every_time(api):
    ctx = api.app.state.ctx
    ctx.modes = {}
    worker = Worker(ctx, interval_s=3600)
    looked, driven = [], []
    worker.guardian = lambda height: looked.append(("guardian", height))
    worker.deadlines = lambda height: looked.append(("deadlines", height))
    worker.drive_pending = lambda height: driven.append(height)
    try:
        worker.tick(fresh_height=False)  # the first tick looks
        for _ in range(3):
            worker.tick(fresh_height=False)  # woken again within the interval: only what woke it
        assert [kind for kind, _h in looked] == ["guardian", "deadlines"] and len(driven) == 4
        worker.tick()  # a tick on the clock always looks
        assert len(looked) == 4 and len(driven) == 5
        worker.interval = 0  # an interval has passed: a woken tick looks too
        worker.tick(fresh_height=False)
        assert len(looked) == 6 and len(driven) == 6
    finally:
        worker.stop()
