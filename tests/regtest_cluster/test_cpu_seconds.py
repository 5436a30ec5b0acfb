"""``cpu_seconds``, the CPU by process that `bench escrow` and a load run's sampler report,
counts a process's children, the ones that ended too."""

from __future__ import annotations

import os
import subprocess
import sys

from regtest_cluster.daemon import cpu_seconds

BURN = "import time\nwhile time.process_time() < 0.3: pass\n"  # 0.3 s of its own CPU, whatever the clock
# /proc counts CPU in clock ticks, cut to whole ticks for user and system time apart, and the
# difference of two float sums can come out a hair under its ticks: 0.3 s may read as 0.28 or
# 0.2899999. Without the child counted, the parent's own share of the run is a few ticks.
COUNTED = 0.25


def test_a_child_that_ended_during_the_run_is_counted_with_its_parent():
    before = cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", BURN], check=True)  # started, burned and reaped in between
    assert cpu_seconds(os.getpid()) - before >= COUNTED


def test_a_live_child_is_counted_and_a_gone_process_is_zero():
    child = subprocess.Popen([sys.executable, "-c", BURN + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        while cpu_seconds(child.pid) < COUNTED:  # it burns, then waits on its input
            assert child.poll() is None, "the child ended before burning its CPU"
        assert cpu_seconds(os.getpid()) >= cpu_seconds(child.pid)
    finally:
        child.communicate(b"")
    assert cpu_seconds(child.pid) == 0.0
