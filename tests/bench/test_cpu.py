"""`bench escrow`'s CPU by process counts a process's children, the ones that ended too."""

from __future__ import annotations

import os
import subprocess
import sys

from bench import escrow

BURN = "import time\nwhile time.process_time() < 0.3: pass\n"  # 0.3 s of its own CPU, whatever the clock
# /proc counts CPU in clock ticks, cut to whole ticks for user and system time apart, and the
# difference of two float sums can come out a hair under its ticks: 0.3 s may read as 0.28 or
# 0.2899999. Without the child counted, the parent's own share of the run is a few ticks.
COUNTED = 0.25


def test_a_child_that_ended_during_the_run_is_counted_with_its_parent():
    before = escrow._cpu_s(os.getpid())
    subprocess.run([sys.executable, "-c", BURN], check=True)  # started, burned and reaped in between
    assert escrow._cpu_s(os.getpid()) - before >= COUNTED


def test_a_live_child_is_counted_and_a_gone_process_is_zero():
    child = subprocess.Popen([sys.executable, "-c", BURN + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        while escrow._cpu_s(child.pid) < COUNTED:  # it burns, then waits on its input
            assert child.poll() is None, "the child ended before burning its CPU"
        assert escrow._cpu_s(os.getpid()) >= escrow._cpu_s(child.pid)
    finally:
        child.communicate(b"")
    assert escrow._cpu_s(child.pid) == 0.0
