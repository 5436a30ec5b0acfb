"""A process's CPU and context switches thread by thread, from /proc, with Python's names for
its threads from py-spy (no nodes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest

from bench import threads
from bench.threads import ThreadSample

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads Linux's /proc")


def test_a_thread_is_sampled_while_it_lives_and_not_after():
    stop, tid = threading.Event(), []
    t = threading.Thread(target=lambda: (tid.append(threading.get_native_id()), stop.wait(30)), name="probe")
    t.start()
    while not tid:
        threading.Event().wait(0.01)
    alive = threads.sample(os.getpid())
    stop.set()
    t.join(30)
    assert alive[tid[0]].comm and alive[os.getpid()].comm  # the kernel's names (a Python thread's is "python")
    assert tid[0] not in threads.sample(os.getpid())  # an ended thread leaves /proc, its figures with it
    assert threads.sample(None) == {}


def test_a_live_threads_switches_and_cpu_grow_between_samples():
    stop, tid, turns = threading.Event(), [], threading.Semaphore(0)

    def worker() -> None:
        tid.append(threading.get_native_id())
        while not stop.is_set():
            turns.acquire()  # blocks until the test lets it go on: a voluntary switch each time
            sum(range(20_000))

    t = threading.Thread(target=worker, name="probe", daemon=True)
    t.start()
    while not tid:
        threading.Event().wait(0.01)
    before = threads.sample(os.getpid())
    for _ in range(200):
        turns.release()
        threading.Event().wait(0.001)
    after = threads.sample(os.getpid())
    stop.set()
    turns.release()
    t.join(10)
    start, end = before[tid[0]], after[tid[0]]
    assert end.voluntary - start.voluntary >= 50, (start, end)
    assert end.cpu_s >= start.cpu_s
    table = threads.by_thread(before, after, {tid[0]: "probe_1"}, per=10)
    assert table["probe"]["threads"] == 1
    assert table["probe"]["switches_per_escrow"]["voluntary"] == round((end.voluntary - start.voluntary) / 10, 1)


def test_threads_are_grouped_by_name_per_escrow_largest_first():
    before = {1: ThreadSample("python", 1.0, 10, 1), 2: ThreadSample("python", 2.0, 20, 2),
              3: ThreadSample("python", 5.0, 0, 0), 9: ThreadSample("python", 9.0, 9, 9)}
    after = {1: ThreadSample("python", 2.0, 30, 3), 2: ThreadSample("python", 2.5, 40, 4),  # a pool of two
             3: ThreadSample("python", 9.0, 50, 50),  # the loop
             4: ThreadSample("event_engine", 0.5, 5, 0),  # started in the window; no Python name
             5: ThreadSample("python", 0.2, 2, 2)}  # an unnamed Python thread: the kernel's name
    names = {1: "escrow-drive_0", 2: "escrow-drive_1", 3: "MainThread"}
    table = threads.by_thread(before, after, names, per=10)
    assert list(table) == ["MainThread", "escrow-drive", "event_engine", "python"]  # thread 9 ended: not counted
    assert table["escrow-drive"] == {"threads": 2, "cpu_s_per_escrow": 0.15,
                                     "switches_per_escrow": {"voluntary": 4.0, "involuntary": 0.4}}
    assert table["event_engine"]["cpu_s_per_escrow"] == 0.05
    assert threads.switches(before, after, per=10) == {"voluntary": 9.7, "involuntary": 5.6}
    assert threads.group("lnd-hub-cb_3") == "lnd-hub-cb" and threads.group("AnyIO worker thread") == "AnyIO worker thread"


def test_python_names_come_from_py_spy():
    if shutil.which("py-spy") is None and shutil.which("py-spy", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("py-spy is in the dev extra")
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, threading\n"
        "stop = threading.Event()\n"
        "t = threading.Thread(target=stop.wait, name='probe-pool_3', daemon=True); t.start()\n"
        "print(t.native_id, flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tid = int(child.stdout.readline())
        names = threads.python_thread_names(child.pid)
        if not names and os.geteuid() != 0:
            pytest.skip("py-spy may not look at another process here (ptrace refused)")
        assert names[tid] == "probe-pool_3" and threads.group(names[tid]) == "probe-pool"
        assert names[child.pid] == "MainThread"
    finally:
        child.kill()
        child.wait()
    assert threads.python_thread_names(child.pid) == {}  # gone: nothing, and no error


def test_a_thread_that_names_itself_is_grouped_without_py_spy():
    from regtest_cluster.nodes.threadnames import named

    tids, stop = [], threading.Event()

    def body() -> None:
        tids.append(threading.get_native_id())
        stop.wait(30)

    pool = [threading.Thread(target=named(body), name=f"probe-pool_{i}") for i in range(2)]
    pool.append(threading.Thread(target=named(body), name="a-very-long-thread-name"))
    for t in pool:
        t.start()
    while len(tids) < 3:
        threading.Event().wait(0.01)
    try:
        seen = threads.sample(os.getpid())
        assert sorted(seen[tid].comm for tid in tids) == ["a-very-long-thr", "probe-pool_0", "probe-pool_1"]
        table = threads.by_thread(seen, seen, {}, per=1)  # the kernel's names alone
        assert table["probe-pool"]["threads"] == 2 and table["a-very-long-thr"]["threads"] == 1
    finally:
        stop.set()
        for t in pool:
            t.join(30)
