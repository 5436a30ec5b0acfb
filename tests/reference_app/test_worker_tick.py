"""A worker woken by commits (many a second under load) still looks for what came due by time
and height once an interval, and no more often; what woke it is carried out on every tick."""

from __future__ import annotations

import threading

from reference_app.worker import Worker
from regtest_cluster.waiting import wait_for


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


def test_carry_on_runs_a_step_as_the_order_s_one_pass_at_a_time_or_leaves_it_to_the_next_tick(api):
    """A payout's end carries its order on (Worker.carry_on): the step runs at once on the drive
    pool, as a pass over the order; while another pass over it runs, or once the worker has
    stopped, it does not run, and the worker's tick (woken, or its clock) sees to the order."""
    ctx = api.app.state.ctx
    ctx.modes = {}
    worker = Worker(ctx, interval_s=3600)
    assert ctx.carry_on == worker.carry_on
    ran, woken = [], []
    worker.wake = lambda: woken.append(True)
    me = threading.get_ident()
    try:
        worker.height = 321
        ctx.carry_on(7, lambda height: ran.append((height, threading.get_ident() != me)))
        wait_for(lambda: ran and not worker._driving, timeout=10, what="the step")
        assert ran == [(321, True)] and not woken  # on a drive thread, not the caller's
        assert worker._claim(7)  # a pass over order 7 is running now
        ctx.carry_on(7, lambda height: ran.append(height))
        assert woken == [True]
        worker._drive(7, lambda height: None, 321)  # that pass ends
        assert len(ran) == 1
        failing = []

        def fails(height):
            failing.append(height)
            raise RuntimeError("the node went away")
        ctx.carry_on(7, fails)  # a step that fails is counted, logged and let go, as a tick's pass
        wait_for(lambda: failing and not worker._driving, timeout=10, what="the failing step")
        assert failing == [321] and worker.errors == 1
    finally:
        worker.stop()
    ctx.carry_on(7, lambda height: ran.append(height))  # stopped: nothing runs
    assert len(ran) == 1
    worker._stop.clear()  # a commit that called just as the worker stopped: its pool is shut down
    ctx.carry_on(7, lambda height: ran.append(height))  # nothing runs, nothing raises into the commit
    assert len(ran) == 1 and not worker._driving
